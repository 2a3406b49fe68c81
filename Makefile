# Everything a fresh machine needs: `make run` and `make test` create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest rules-test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m detector.demo

test: $(STAMP) lint typecheck rules-test pytest

lint: $(STAMP)
	$(BIN)/ruff check detector probes tests bench
	$(BIN)/ruff format --check detector probes tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

rules-test: $(STAMP)
	$(BIN)/detector rules check rules/
	$(BIN)/detector rules test rules/tests/*.yaml

pytest: $(STAMP)
	$(BIN)/pytest -q

# Figures, not pass/fail: see docs/performance.md. The daemon benches take minutes each.
bench: $(STAMP)
	$(BIN)/python bench/evaluation_bench.py
	$(BIN)/python bench/replay_bench.py
	$(BIN)/python bench/probe_cost_bench.py
	$(BIN)/python bench/daemon_bench.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
