# Two commands: `make run` (demo on two origins) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-e2e bench system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,scale]'
	touch $(STAMP)

install: $(STAMP)

# From the OS packages when missing: Chromium for the e2e suite, promtool (Debian package
# prometheus) for tests/test_monitoring.py, the Redis and PostgreSQL 15 servers the scale
# stack's test run starts (tests/redis_support.py, tests/postgres_support.py), nginx and
# openssl for tests/test_deploy.py (the proxy in front of two processes, its TLS). One
# apt-get update, only if something is missing.
PG_BIN ?= /usr/lib/postgresql/15/bin
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	test -x $(PG_BIN)/initdb || missing="$$missing postgresql-15"; \
	command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; fi

run: $(STAMP)
	$(BIN)/python -m examples.host_page.run

# axe-core for e2e/test_accessibility.py, as pinned by e2e/package-lock.json (again only
# when the lock file changes).
E2E_NODE := e2e/node_modules/.package-lock.json
$(E2E_NODE): e2e/package-lock.json
	npm ci --prefix e2e --silent --no-audit --no-fund

# The suite on both stacks: SQLite + memory broker, then PostgreSQL + Redis (servers
# started and stopped by the run, on private ports in a temp dir), then the e2e.
test: $(STAMP) system-deps $(E2E_NODE)
	$(BIN)/python -m pytest tests
	WIDGET_TEST_STACK=scale WIDGET_TEST_PG_BIN=$(PG_BIN) $(BIN)/python -m pytest tests
	$(BIN)/python -m pytest e2e -p no:asyncio -c e2e/pytest.ini

bench: $(STAMP) system-deps
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data
