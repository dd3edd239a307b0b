# Two commands a newcomer needs: `make up` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up demo test lint typecheck unit integration bench chaos clean install compile system-deps

## Binaries some tests run for real, and the Debian packages that ship them: Prometheus and
## promtool (deploy/prometheus rules, the dashboard test) and Alertmanager (its notifier).
SYSTEM_BINARIES := prometheus promtool prometheus-alertmanager chromium chromedriver
SYSTEM_PACKAGES := prometheus prometheus-alertmanager chromium chromium-driver

install: $(STAMP)

## Compile the per-event detection modules (setup.py) again after an edit; only changed ones
## are rebuilt. A build not made from the current source is never used (agentwatch/_native.py).
compile: $(STAMP)
	$(BIN)/python setup.py --quiet build_ext --inplace --parallel 2

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	AGENTWATCH_PURE_PYTHON=1 $(BIN)/python -m pip install --quiet -e '.[dev]'  # compiled below
	touch $(STAMP)

## Embedded stack (broker + worker + web) with a simulated fleet so events flow at once.
up: compile
	$(BIN)/agentwatch up --demo

lint: $(STAMP)
	$(BIN)/ruff check agentwatch tests examples setup.py conftest.py
	$(BIN)/ruff format --check agentwatch tests examples setup.py conftest.py

typecheck: $(STAMP)
	$(BIN)/mypy

## Install SYSTEM_PACKAGES with apt-get when a binary is missing (CI: a bare machine, as root).
system-deps:
	@missing=""; \
	for bin in $(SYSTEM_BINARIES); do command -v $$bin >/dev/null 2>&1 || missing="$$missing $$bin"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	  else echo "error:$$missing not installed; as root run: apt-get install -y $(SYSTEM_PACKAGES)" >&2; exit 1; fi; \
	  echo "installing $(SYSTEM_PACKAGES) (missing:$$missing)"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
	    --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null && \
	  for bin in $(SYSTEM_BINARIES); do command -v $$bin >/dev/null || { echo "error: $$bin still missing" >&2; exit 1; }; done; \
	fi

## Lint, types, unit and integration tests (integration tests start their own embedded broker;
## Prometheus and Alertmanager tests start the real binaries, which must be there: no skips).
test: lint typecheck compile system-deps
	REQUIRE_SYSTEM_BINARIES=1 $(BIN)/python -m pytest -q --durations=20

## Chaos and fuzz suite at full size (tests/chaos): 20 SIGKILLs of a worker with incidents in
## flight, 1,000,000 fuzzed records, 200 concurrent control requests, forged control records.
## `make test` runs the same scenarios small (CHAOS_SCALE=short); CHAOS_SEED=N changes the seed.
chaos: compile
	CHAOS_SCALE=full $(BIN)/python -m pytest -q -s -m chaos --timeout 5400 tests/chaos

bench: compile
	$(BIN)/agentwatch bench --events 200000 --agents 1000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
	rm -f agentwatch/detectors/*.so agentwatch/detectors/*.so.sha256
