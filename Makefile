# devconsole: `make run` starts the proxy with the TUI; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
ARGS ?=

.PHONY: run demo test lint bench conformance conformance-full venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/devconsole --listen 127.0.0.1:8080 $(ARGS)

demo: $(STAMP)
	$(VENV)/bin/devconsole demo --listen 127.0.0.1:8080 $(ARGS)

test: $(TEST_STAMP)
	$(PY) -m pytest -q $(ARGS)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check devconsole tests bench addons
	$(VENV)/bin/ruff format --check devconsole tests bench addons
	$(VENV)/bin/mypy

bench: $(TEST_STAMP)
	$(PY) bench/run_all.py $(ARGS)

conformance: $(TEST_STAMP)
	$(PY) bench/autobahn/run.py --cases quick $(ARGS)

conformance-full: $(TEST_STAMP)
	$(PY) bench/autobahn/run.py --cases all $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
