# syntax=docker/dockerfile:1
# One image for every Python component of the lab; `obslab serve NAME` picks the component
# (docker-compose.yml sets the command of each service). The build stage installs the pinned
# dependencies (constraints.txt) and the project into a virtualenv; the runtime stage copies
# that virtualenv and the files read at run time (runbooks, the alerting spec, notification
# templates) onto a clean slim image and runs as an unprivileged user. No compiler is needed:
# every dependency ships a manylinux wheel.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/obslab
# Dependencies in a layer of their own, so that a code change does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && /opt/obslab/bin/pip install -c constraints.txt -r requirements.txt
COPY README.md ./
COPY obslab/ obslab/
COPY services/ services/
COPY ml/ ml/
COPY iis-mock/ iis-mock/
RUN /opt/obslab/bin/pip install --no-deps . \
    && /opt/obslab/bin/python -m compileall -q /opt/obslab/lib

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/obslab/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OBSLAB_REPO_ROOT=/app \
    OBSLAB_DATA_DIR=/var/lib/obslab \
    OBSLAB_BIND_HOST=0.0.0.0
# compose runs the root filesystem read-only; what is written lives in volumes mounted on folders
# made here, owned by the obslab user, so that a fresh named volume inherits that owner:
# /run/obslab/secrets (the lab's secrets, `obslab secrets init`; 0700) and the DDoS detector's
# model under the data directory.
RUN groupadd --system --gid 10001 obslab \
    && useradd --system --uid 10001 --gid obslab --home-dir /var/lib/obslab --create-home \
        --shell /usr/sbin/nologin obslab \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/obslab/ml /var/lib/obslab/ml/ddos \
    && install -d -o root -g root -m 0755 /run/obslab \
    && install -d -o 10001 -g 10001 -m 0700 /run/obslab/secrets
COPY --from=build /opt/obslab /opt/obslab
WORKDIR /app
COPY runbooks/ runbooks/
COPY prometheus/spec/ prometheus/spec/
COPY alertmanager/templates/ alertmanager/templates/
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/obslab-healthcheck
USER 10001:10001
# Without an argument the probe asks PID 1 which component runs; compose passes the URL.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 CMD ["obslab-healthcheck"]
ENTRYPOINT ["obslab"]
CMD ["serve", "gateway"]
