# coron3_dask: two commands for a newcomer on a fresh machine.
#   make demo   set up .venv and run the pipeline on a simulated programme on a local Dask cluster
#   make test   set up .venv (with test tools and the jwst reference) and run lint, types and tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_DIR ?= demo_output

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/coron3-dask -v demo --dir $(DEMO_DIR)

lint: $(VENV)/.test
	$(BIN)/ruff check coron3_dask tests benchmarks
	$(BIN)/ruff format --check coron3_dask

typecheck: $(VENV)/.test
	$(BIN)/mypy coron3_dask

unit: $(VENV)/.test
	$(BIN)/pytest

test: lint typecheck unit

bench: $(VENV)/.test
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
