# `make run` and `make test` work on a fresh Debian 12 machine (as root) and on a
# development machine alike: system packages are installed only when missing, the
# virtualenv is created once and re-installed only when pyproject.toml changes.

PYTHON    ?= python3
VENV      := .venv
STAMP     := $(VENV)/.installed
APT       := DEBIAN_FRONTEND=noninteractive apt-get
# The npm project of the independent test SMSC (see system-packages).
SMSC_NODE := tests/connectors/smpp_peers/node
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

# The Redis tests start their own throwaway redis-server on a free loopback port. Fax
# rendering draws text in DejaVu Sans (fonts-dejavu-core) and codes G4 pages through
# libtiff6 (fax/g4.py), which libtiff-tools brings along with tiffinfo for the tests.
system-packages: $(SMSC_NODE)/node_modules/.installed
	@command -v redis-server >/dev/null || { $(APT) update && $(APT) install -y redis-server; }
	@test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || { $(APT) update \
		&& $(APT) install -y --no-install-recommends fonts-dejavu-core; }
	@command -v tiffinfo >/dev/null || { $(APT) update \
		&& $(APT) install -y --no-install-recommends libtiff-tools; }

# The SMPP tests also run an independent SMSC on the npm package smpp (node-smpp): Node.js
# from Debian when missing, then the locked packages, re-installed when the lock changes.
$(SMSC_NODE)/node_modules/.installed: $(SMSC_NODE)/package.json $(SMSC_NODE)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { $(APT) update && $(APT) install -y nodejs npm; }
	cd $(SMSC_NODE) && npm ci --no-audit --no-fund
	@touch $@

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null || { $(APT) update && $(APT) install -y python3 python3-venv; }
	@# Debian's python3 has no ensurepip without python3-venv: the first attempt fails then.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); $(APT) update \
		&& $(APT) install -y python3-venv && $(PYTHON) -m venv $(VENV); }

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@
