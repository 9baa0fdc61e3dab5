# Postroom: `make run` starts a demo server, `make test` installs what the tests need and runs them all.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests drive: a real PostgreSQL, real mail clients, Chromium for the webmail (Playwright
# drives /usr/bin/chromium; `playwright install` is never run).
# vdirsyncer: a real CardDAV client (tests/interop/test_carddav_interop.py).
# swaks needs the Perl TLS modules for STARTTLS (recommended, not pulled in with --no-install-recommends).
DEB_PACKAGES := postgresql swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl mutt isync fetchmail chromium vdirsyncer
PYTEST_ARGS ?=
# `make fuzz`: seconds per atheris target (tests/fuzz); what it finds lands in var/fuzz.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := imap_grammar mime smtp_data

.PHONY: run test test-quick deps venv clean bench fuzz

# The tests start many Python processes (a pytest-xdist worker per core, `postroom` subprocesses, worker
# processes): they keep compiled bytecode in __pycache__ (ignored by git) even where the environment
# turns that off. Without it each one compiles every module it imports again: collecting the suite took
# 8.5 s of CPU per worker against 3.1 s, and each `postroom` process 0.25 s more.
unexport PYTHONDONTWRITEBYTECODE

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

# Line and branch coverage of the five packages ([tool.coverage] in pyproject.toml; fails under its floor),
# on both cores: the coverage tracer costs a third more time. --dist loadfile keeps a module's tests on one
# worker, so a module-scoped fixture (the 10,000-message folders) is built once; each worker starts its own PostgreSQL.
test: deps $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --cov $(PYTEST_ARGS)

# The fast layers on both cores (pytest-xdist), in about a minute: parsers, store, SMTP, IMAP, delivery,
# the bridges' store and worker, and a smoke of the web app and its API (sign-in, mail, the JSON API,
# workflow events). The rest of the web app, the multi-site suites, the hostile suites, PostgreSQL,
# the browser and the real clients run in `make test`. So do the tests of the quick layers that took
# 0.5 s or more each (marked slow, 2026-12-06: 74 of them were 72 of the 161 s of test time; the quick
# run went from 92-95 s to 62 s on a busy 2-core VM).
QUICK_PATHS := tests/unit tests/property tests/protocol tests/store tests/fuzz \
	tests/web/test_signin.py tests/web/test_mail.py tests/web/test_api.py tests/web/test_events.py
test-quick: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow and not interop and not pg and not web" $(QUICK_PATHS) $(PYTEST_ARGS)

# Coverage-guided fuzzing of the parsers; a crash leaves var/fuzz/<target>-crash-*: add it to
# tests/fuzz/corpus/<target>/ with the fix (make test replays the corpus).
fuzz: $(STAMP)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p var/fuzz/$$t && \
		$(PY) -m tests.fuzz.run $$t var/fuzz/$$t tests/fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) \
			-print_final_stats=1 -artifact_prefix=var/fuzz/$$t- || exit 1; \
	done

bench: $(STAMP)
	$(PY) benchmarks/store_bench.py

clean:
	rm -rf $(VENV) var .pytest_cache
