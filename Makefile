# Everything a fresh machine needs: `make run` and `make test` create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt hooks typecheck pytest rules-test bench bench-smoke chaos clean catalogs \
	compiled pytest-compiled

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m detector.demo

test: $(STAMP) lint typecheck compiled rules-test pytest pytest-compiled bench-smoke

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
# The whole suite runs on the pure-Python engine (coverage cannot see compiled code) ...
pytest: $(STAMP)
	DETECTOR_PURE=1 $(BIN)/pytest -q --cov --cov-report=term

# ... and the engine, replay and rule-test tests again on the compiled one (~20 s).
ENGINE_TESTS := tests/test_engine*.py tests/test_replay*.py tests/test_ruletest.py \
	tests/test_properties*.py tests/test_split.py tests/test_quorum.py tests/test_rulefile.py
pytest-compiled: compiled
	DETECTOR_EXPECT_COMPILED=1 $(BIN)/pytest -q $(ENGINE_TESTS)

# The engine's hot modules compiled with mypyc into build/mypyc (~20-60 s; skipped while it is
# current). detector/native.py loads it only when built from the current sources;
# DETECTOR_PURE=1 forces the pure-Python engine. See docs/architecture.md.
compiled: $(STAMP)
	@command -v cc >/dev/null || command -v gcc >/dev/null || ! command -v apt-get >/dev/null || \
		{ echo "installing gcc (Debian) for the compiled engine"; export DEBIAN_FRONTEND=noninteractive; \
		  apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev; } || true
	$(BIN)/python -m detector.native build

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
	rm -rf $(VENV) var build .mypy_cache .ruff_cache .pytest_cache .coverage htmlcov

# Re-extract the page's messages and merge them into each language's catalog; then translate
# the new entries (tests/test_i18n.py fails while one is missing).
catalogs: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --omit-header --sort-output \
		-o detector/web/translations/messages.pot .
	$(BIN)/pybabel update -i detector/web/translations/messages.pot \
		-d detector/web/translations -w 100 --ignore-obsolete
