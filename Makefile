# BEAR — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DB ?= data/bear.duckdb
PORT ?= 5006
EVENTS ?= 10000

.PHONY: run test test-all soak bench lint venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the package with its test and dev extras; re-runs when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $@

# The example rules plugin is installed for the tests (they prove entry-point discovery).
$(VENV)/.example: examples/bear-rules-example/pyproject.toml | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --no-deps -e examples/bear-rules-example
	touch $@

venv: $(VENV)/.installed

$(DB): | $(VENV)/.installed
	$(BIN)/bear seed --db $(DB) --events $(EVENTS) --seed 7

run: $(VENV)/.installed $(DB)
	$(BIN)/bear serve --db $(DB) --port $(PORT) --address 127.0.0.1

test: $(VENV)/.installed $(VENV)/.example
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(VENV)/.installed $(VENV)/.example
	$(BIN)/python -m pytest -q

# The crash soak: one run SIGKILLed at 50 or more random moments (marked slow).
soak: $(VENV)/.installed $(VENV)/.example
	$(BIN)/python -m pytest -m slow -q tests/test_crash.py

# Every benchmark, each printing its floor measured in the same run. The dashboard, export
# and API benchmarks share one 1M-event demo book, seeded once.
BENCH_DB ?= data/bench-1m.duckdb

$(BENCH_DB): | $(VENV)/.installed
	$(BIN)/bear seed --db $(BENCH_DB) --events 1000000 --seed 7

# A benchmark that prints FAIL exits non-zero; the others still run ("-"), and make reports it.
bench: $(VENV)/.installed $(BENCH_DB)
	-$(BIN)/python bench/bench_store.py
	-$(BIN)/python bench/bench_rules.py
	-$(BIN)/python bench/bench_pipeline.py --million --repeat 3
	-$(BIN)/python bench/bench_ui.py --db $(BENCH_DB)
	-$(BIN)/python bench/bench_api.py --db $(BENCH_DB)
	-$(BIN)/python bench/bench_browser.py --db $(BENCH_DB)
	-$(BIN)/python bench/bench_export.py --db $(BENCH_DB)
	-$(BIN)/python bench/bench_open.py

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check bear tests bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
