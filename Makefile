# `make run` and `make test` work on a fresh Debian 12 machine (as root) and on a
# development machine alike: system packages are installed only when missing, the
# virtualenv is created once and re-installed only when pyproject.toml changes.

PYTHON    ?= python3
VENV      := .venv
STAMP     := $(VENV)/.installed
APT       := DEBIAN_FRONTEND=noninteractive apt-get
# The npm project of the independent test SMSC (see system-packages).
SMSC_NODE := tests/connectors/smpp_peers/node
# The npm project of the portal's browser code: htmx (copied into the portal's static
# files, which also hold the committed copy) and axe-core (the browser tests inject it).
PORTAL_NPM := gateway/portal/npm
PORTAL_HTMX := gateway/portal/static/vendor/htmx.min.js
# Extra arguments for the demo, e.g. `make run DEMO_ARGS="--port 9000"`.
DEMO_ARGS ?=

.PHONY: run test system-packages portal-assets

## run: serve a throwaway demo gateway (SQLite, demo team, API key) on 127.0.0.1:8080
run: $(STAMP)
	$(VENV)/bin/gateway demo $(DEMO_ARGS)

## test: lint, type-check and run the test suite
test: $(STAMP) system-packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# The Redis tests start their own throwaway redis-server on a free loopback port; the
# portal's browser tests drive Debian's chromium (fonts for readable screenshots).
system-packages: $(SMSC_NODE)/node_modules/.installed portal-assets
	@command -v redis-server >/dev/null || { $(APT) update && $(APT) install -y redis-server; }
	@command -v chromium >/dev/null && [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] \
		|| { $(APT) update && $(APT) install -y --no-install-recommends chromium fonts-dejavu-core; }

# htmx and axe-core exactly as package-lock.json pins them; htmx is then copied into the
# portal's static files (a test checks that the committed copy is the locked one).
portal-assets: $(PORTAL_NPM)/node_modules/.installed
	@cmp -s $(PORTAL_NPM)/node_modules/htmx.org/dist/htmx.min.js $(PORTAL_HTMX) \
		|| cp $(PORTAL_NPM)/node_modules/htmx.org/dist/htmx.min.js $(PORTAL_HTMX)

$(PORTAL_NPM)/node_modules/.installed: $(PORTAL_NPM)/package.json $(PORTAL_NPM)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { $(APT) update && $(APT) install -y nodejs npm; }
	cd $(PORTAL_NPM) && npm ci --no-audit --no-fund
	@touch $@

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
