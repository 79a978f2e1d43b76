# Two commands: `make run` (everything, embedded services when none are configured) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit bench openapi clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/marketplace run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# Needs PostgreSQL on 127.0.0.1:5432 (or BENCH_PG_URL) and redis-server; BENCH_ARGS e.g. "--levels 16 --no-burst".
bench: $(STAMP)
	$(BIN)/python -m tests.bench.webhook_bench $(BENCH_ARGS)

openapi: $(STAMP)
	@$(BIN)/marketplace openapi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
