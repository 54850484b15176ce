# Two commands set up and run everything on a fresh machine: `make run` and `make test`.
# Both create .venv from pyproject.toml on first use and reuse it afterwards; the stamp file
# is refreshed only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/invite-ledger run $(ARGS)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.wal --quick
	$(BIN)/python -m benchmarks.attribution
	$(BIN)/python -m benchmarks.pipeline --quick
	$(BIN)/python -m benchmarks.faults --quick

clean:
	rm -rf $(VENV)
