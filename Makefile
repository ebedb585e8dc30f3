# The two commands of the README: `make run` (the main job on the embedded default) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export RECSYS_DATA_DIR ?= $(CURDIR)/data

.PHONY: run test venv lint

venv: $(VENV)/.installed

# torch goes first, pinned: an unpinned torch (asked for by sentence-transformers) is a multi-GB CUDA build.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# The whole product: demo data, airflow standalone running the nightly DAG, the API (scripts/run_local.py).
run: venv
	$(BIN)/python scripts/run_local.py

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/python -m pytest
