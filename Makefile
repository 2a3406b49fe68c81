# Everything a fresh machine needs: `make run` and `make test` create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt hooks typecheck pytest rules-test bench bench-smoke chaos clean catalogs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m detector.demo

test: $(STAMP) lint typecheck rules-test pytest bench-smoke

LINTED := detector probes tests bench

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# Rewrite in place what `make lint` would reject (formatting, import order, fixable rules).
fmt: $(STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

# Install the git pre-commit hook (.pre-commit-config.yaml: ruff, ruff-format, mypy from .venv).
hooks: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pre-commit install

typecheck: $(STAMP)
	$(BIN)/mypy

rules-test: $(STAMP)
	$(BIN)/detector rules check rules/
	$(BIN)/detector rules test rules/tests/*.yaml

# Coverage costs ~3 s here; the floor is [tool.coverage.report] fail_under in pyproject.toml.
pytest: $(STAMP)
	$(BIN)/pytest -q --cov --cov-report=term

# Figures, not pass/fail: see docs/performance.md. The daemon benches take minutes each.
bench: $(STAMP)
	$(BIN)/python bench/evaluation_bench.py
	$(BIN)/python bench/replay_bench.py
	$(BIN)/python bench/probe_cost_bench.py
	$(BIN)/python bench/daemon_bench.py

# Three daemons, PostgreSQL and the sandbox under random faults (kill -9, SIGSTOP, cut
# connections, PostgreSQL restarts); `make test` runs one round of each. CHAOS_SEED repeats one.
CHAOS_ROUNDS ?= 24
chaos: $(STAMP)
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) $(BIN)/pytest -q -s tests/test_chaos.py

# A tiny run of every bench script (~20 s), so none of them rots; the figures mean nothing.
bench-smoke: $(STAMP)
	$(BIN)/python bench/evaluation_bench.py --sizes 200 --repeat 1 >/dev/null
	$(BIN)/python bench/replay_bench.py --results 3000 --components 10 \
		--tracemalloc-results 1000 >/dev/null
	$(BIN)/python bench/probe_cost_bench.py --requests 30 --repeat 1 --probes 10 >/dev/null
	$(BIN)/python bench/notify_bench.py --changes 5 --burst 20 >/dev/null
	$(BIN)/python bench/daemon_bench.py --probes 10 --seconds 2 --interval 2 --warmup 1 \
		--components 2 --scrape-every 1 --sample-every 0.5 >/dev/null
	$(BIN)/python bench/read_load_bench.py --probes 5 --interval 2 --seconds 1 --warmup 1 \
		--connections 4 >/dev/null
	@echo "bench-smoke: every bench script ran"

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .coverage htmlcov

# Re-extract the page's messages and merge them into each language's catalog; then translate
# the new entries (tests/test_i18n.py fails while one is missing).
catalogs: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --omit-header --sort-output \
		-o detector/web/translations/messages.pot .
	$(BIN)/pybabel update -i detector/web/translations/messages.pot \
		-d detector/web/translations -w 100 --ignore-obsolete
