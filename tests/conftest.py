"""Test-wide setup: an isolated data directory and an in-memory span exporter.

Spans of in-process apps are asserted through the in-memory exporter installed here, before
any app exists (the telemetry bootstrap keeps an SDK provider it finds). Everything that needs
the real OTLP wire runs against the real trace sink in tests/integration.
"""

from __future__ import annotations

import os
import tempfile
import uuid

_DATA_DIR = tempfile.mkdtemp(prefix="obslab-tests-")
os.environ["OBSLAB_DATA_DIR"] = _DATA_DIR
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")
for _variable in ("OBSLAB_DB_URL", "OBSLAB_PORT_OFFSET", "OTEL_SDK_DISABLED", "OBSLAB_SECRETS_DIR",
                  "OBSLAB_JWT_SECRET", "OBSLAB_CONTROL_TOKEN"):
    os.environ.pop(_variable, None)

import pytest  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from obslab import secrets  # noqa: E402
from tests.support import MYSQL_SERVER_URL, drop_mysql_databases, mysql_reachable  # noqa: E402

# The lab's per-deployment secrets (service keys, control tokens, the access-token key), as
# `obslab up` generates them, for every app this test process (and its children) builds.
os.environ[secrets.SECRETS_DIR_ENV] = str(secrets.secrets_dir())
secrets.init_secrets(secrets.secrets_dir(), secrets.lab_components())

SPANS = InMemorySpanExporter()
_provider = TracerProvider(resource=Resource.create({"service.name": "obslab-tests"}))
_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_provider)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    SPANS.clear()
    return SPANS


@pytest.fixture(params=["sqlite", "mariadb"])
def db_kind(request) -> str:
    return request.param


@pytest.fixture
def db_url_for(db_kind, tmp_path):
    """``db_url_for(service)`` -> a fresh database URL of the parametrized kind."""
    created: list[str] = []
    run = uuid.uuid4().hex[:8]

    def make(service: str) -> str:
        if db_kind == "sqlite":
            return f"sqlite:///{tmp_path / f'{service}.sqlite3'}"
        if not mysql_reachable():
            pytest.fail(f"MariaDB/MySQL is not reachable at {MYSQL_SERVER_URL}; start it "
                        "(`obslab doctor --install --mariadb`) or set OBSLAB_TEST_MYSQL_URL")
        name = f"obslabtest_{run}_{service.replace('-', '_')}"
        created.append(name)
        return f"{MYSQL_SERVER_URL.rstrip('/')}/{name}"

    yield make
    drop_mysql_databases(created)
