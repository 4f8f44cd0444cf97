# The two commands a newcomer needs: `make up` (run the lab) and `make test` (run every test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup up down status test generate bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "obslab needs Python 3.11 or newer; found " + sys.version.split()[0] + " (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

# Installs Prometheus when it can (root on Debian) or says how; runs the lab either way.
up: setup
	-@$(BIN)/obslab doctor --install
	$(BIN)/obslab up

down: setup
	$(BIN)/obslab down

status: setup
	$(BIN)/obslab status

# The whole suite: unit tests and integration tests against real servers on 127.0.0.1.
# Most tests run on two workers; whole labs and timing comparisons (marker `serial`) run alone
# afterwards, so another test's load cannot skew them. Both parts always run; either failing fails.
test: setup
	$(BIN)/obslab doctor --install --mariadb
	$(BIN)/obslab generate --check
	@status=0; \
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not serial" || status=$$?; \
	$(BIN)/python -m pytest -m serial || status=$$?; \
	exit $$status

generate: setup
	$(BIN)/obslab generate

bench: setup
	$(BIN)/obslab bench api

clean:
	rm -rf $(VENV) .obslab .pytest_cache
