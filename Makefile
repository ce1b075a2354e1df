# Two commands set everything up on a fresh machine:
#   make demo   # the whole pipeline on the built-in synthetic dataset, then the results table
#   make test   # the test suite
# Both create .venv/ and install into it (torch first, from the CPU build: see TORCH below).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test test-all install bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned, so no multi-GB CUDA build is pulled where a CPU build lies on disk.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: $(VENV)/.installed
	PATH="$(abspath $(BIN)):$$PATH" bash examples/demo.sh

bench: $(VENV)/.installed
	for b in benchmarks/*_bench.py; do $(BIN)/python $$b || exit 1; done

# Regenerate the command reference from --help (a test checks it is current).
docs: $(VENV)/.installed
	$(BIN)/python -m dcue_cli.docs > docs/commands.md

clean:
	rm -rf $(VENV) demo-out .pytest_cache
