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

.PHONY: run test run-packages system-packages portal-assets

## run: serve a throwaway demo gateway (SQLite, demo team, API key) on 127.0.0.1:8080
run: $(STAMP) run-packages
	$(VENV)/bin/gateway demo $(DEMO_ARGS)

## test: lint, type-check and run the test suite
test: $(STAMP) system-packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# Debian packages, installed only when missing (one apt-get run for all that are). While
# they install, no service may start (policy-rc.d): redis-server, rtpengine-daemon and
# dovecot would otherwise start system daemons on their standard ports; the tests start
# their own on free loopback ports.
#   the gateway itself: libspandsp2 (T.30/T.38 engine, loaded with ctypes), libtiff6 (G4
#   coding of fax pages, fax/g4.py), fonts-dejavu-core (text and cover pages);
RUN_DEBS  := libspandsp2 libtiff6 fonts-dejavu-core
#   the tests: redis-server; tshark and rtpengine (fax media checks); tiffinfo; SIPp
#   (sip-tester: the far end in the SIP user agent's tests); chromium for the portal's
#   browser tests; dovecot-imapd (the IMAP server of the email-to-fax mailbox tests) and
#   swaks (an emailer in the SMTP receiver's tests); ghostscript, only the baseline that
#   bench/fax_render.py (and its smoke test) compares our renderer with — never part of
#   the product (it is AGPL).
TEST_DEBS := redis-server tshark rtpengine-daemon libtiff-tools sip-tester chromium \
	dovecot-imapd swaks ghostscript
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		guard=; [ -e /usr/sbin/policy-rc.d ] || { guard=1; \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }; \
		$(APT) update && $(APT) install -y --no-install-recommends $$missing; rc=$$?; \
		[ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi
endef

run-packages:
	$(call apt_install,$(RUN_DEBS))

system-packages: run-packages $(SMSC_NODE)/node_modules/.installed portal-assets
	$(call apt_install,$(TEST_DEBS))

# htmx and axe-core exactly as package-lock.json pins them; htmx is then copied into the
# portal's static files (a test checks that the committed copy is the locked one).
portal-assets: $(PORTAL_NPM)/node_modules/.installed
	@cmp -s $(PORTAL_NPM)/node_modules/htmx.org/dist/htmx.min.js $(PORTAL_HTMX) \
		|| cp $(PORTAL_NPM)/node_modules/htmx.org/dist/htmx.min.js $(PORTAL_HTMX)

$(PORTAL_NPM)/node_modules/.installed: $(PORTAL_NPM)/package.json $(PORTAL_NPM)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { $(APT) update && $(APT) install -y --no-install-recommends nodejs npm; }
	cd $(PORTAL_NPM) && npm ci --no-audit --no-fund
	@touch $@

# The SMPP tests also run an independent SMSC on the npm package smpp (node-smpp): Node.js
# from Debian when missing, then the locked packages, re-installed when the lock changes.
$(SMSC_NODE)/node_modules/.installed: $(SMSC_NODE)/package.json $(SMSC_NODE)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { $(APT) update && $(APT) install -y --no-install-recommends nodejs npm; }
	cd $(SMSC_NODE) && npm ci --no-audit --no-fund
	@touch $@

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null || { $(APT) update && $(APT) install -y --no-install-recommends python3 python3-venv; }
	@# Debian's python3 has no ensurepip without python3-venv: the first attempt fails then.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); $(APT) update \
		&& $(APT) install -y --no-install-recommends python3-venv && $(PYTHON) -m venv $(VENV); }

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@
