# Postroom: `make run` starts a demo server, `make test` installs what the tests need and runs them all.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests drive: a real PostgreSQL, real mail clients, Chromium for the webmail (Playwright
# drives /usr/bin/chromium; `playwright install` is never run).
# swaks needs the Perl TLS modules for STARTTLS (recommended, not pulled in with --no-install-recommends).
DEB_PACKAGES := postgresql swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl mutt isync fetchmail chromium
PYTEST_ARGS ?=

.PHONY: run test test-quick deps venv clean bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "The tests need these Debian packages; install them as root:"; \
		echo "  sudo apt-get install$$missing"; \
	fi

run: $(STAMP)
	$(VENV)/bin/postroom init --demo
	$(VENV)/bin/postroom serve

test: deps $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The fast layers on both cores (pytest-xdist); the hostile suites and interop need `make test`.
test-quick: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow and not interop and not pg and not web" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/store_bench.py

clean:
	rm -rf $(VENV) var .pytest_cache
