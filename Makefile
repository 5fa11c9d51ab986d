# `make run` and `make test` work on a fresh Debian 12 machine (as root) and on a
# development machine alike: system packages are installed only when missing, the
# virtualenv is created once and re-installed only when pyproject.toml changes.

PYTHON    ?= python3
VENV      := .venv
STAMP     := $(VENV)/.installed
APT       := DEBIAN_FRONTEND=noninteractive apt-get
# Extra arguments for the demo, e.g. `make run DEMO_ARGS="--port 9000"`.
DEMO_ARGS ?=

.PHONY: run test system-packages

## run: serve a throwaway demo gateway (SQLite, demo team, API key) on 127.0.0.1:8080
run: $(STAMP)
	$(VENV)/bin/gateway demo $(DEMO_ARGS)

## test: lint, type-check and run the test suite
test: $(STAMP) system-packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# The Redis tests start their own throwaway redis-server on a free loopback port.
system-packages:
	@command -v redis-server >/dev/null || { $(APT) update && $(APT) install -y redis-server; }

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null || { $(APT) update && $(APT) install -y python3 python3-venv; }
	@# Debian's python3 has no ensurepip without python3-venv: the first attempt fails then.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); $(APT) update \
		&& $(APT) install -y python3-venv && $(PYTHON) -m venv $(VENV); }

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@
