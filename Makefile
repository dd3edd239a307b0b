# Two commands a newcomer needs: `make up` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up demo test lint typecheck unit integration bench clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Embedded stack (broker + worker + web) with a simulated fleet so events flow at once.
up: $(STAMP)
	$(BIN)/agentwatch up --demo

lint: $(STAMP)
	$(BIN)/ruff check agentwatch tests
	$(BIN)/ruff format --check agentwatch tests

typecheck: $(STAMP)
	$(BIN)/mypy

## Lint, types, unit and integration tests (integration tests start their own embedded broker).
test: lint typecheck
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/agentwatch bench --events 200000 --agents 1000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
