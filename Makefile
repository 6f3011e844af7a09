# Two commands: `make run` (demo on two origins) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-e2e bench system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# From the OS packages when missing: Chromium for the e2e suite, promtool (Debian package
# prometheus) for tests/test_monitoring.py. One apt-get update, only if something is missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; fi

run: $(STAMP)
	$(BIN)/python -m examples.host_page.run

test: $(STAMP) system-deps
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest e2e -p no:asyncio -c e2e/pytest.ini

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data
