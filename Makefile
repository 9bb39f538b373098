# The two commands a new user needs: `make run` (the demo) and `make test` (the whole suite); `make lint` and
# `make docs` are what CI checks besides.
# Each creates .venv when it is missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The modules setup.py compiles with mypyc: an edit to one rebuilds the install.
COMPILED := $(shell sed -n 's/^ *"\(src\/pyswoole\/.*\.py\)",$$/\1/p' setup.py)

$(STAMP): pyproject.toml setup.py $(wildcard src/pyswoole/*/*.c) $(COMPILED) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,docs]'
	touch $@

run: $(STAMP)
	$(BIN)/python examples/chat/server.py

# The whole suite on the compiled hot path, then the unit tests and the core servers' tests on its Python source.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2
	PYSWOOLE_PURE_PYTHON=1 $(BIN)/python -m pytest -q -n 2 tests/unit tests/integration/runtime/test_base_single.py \
		tests/integration/runtime/test_process_connections.py \
		tests/integration/http/test_server.py tests/integration/websocket/test_websocket_server.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir build/site

bench: $(STAMP)
	$(BIN)/python bench/echo_bench.py && $(BIN)/python bench/task_bench.py

clean:
	rm -rf $(VENV) build .pytest_cache
