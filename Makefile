# Two commands a newcomer needs: `make run` and `make test`. Both set up
# everything they need first (a virtualenv in .venv, and for the tests the
# system binaries the suite runs for real). `make run` installs only what
# `probed serve` needs; the test tools come with the first `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: run test bench setup test-deps lint clean

run: $(VENV)/.runtime
	$(BIN)/probed serve

# Two workers (pytest-xdist): most of the suite waits on real servers, so two
# processes halve its time on two cores; every fixture takes free ports of its own.
TEST_WORKERS ?= 2

test: setup test-deps lint
	$(BIN)/pytest -n $(TEST_WORKERS)

# Regenerates docs/benchmarks.md (about half an hour with the soak; BENCH_QUICK=1 for a short trial run).
# `make bench BENCH=start-up` runs one section and rewrites only that one (names: SECTIONS in bench/run.py).
bench: setup
	bench/setup.sh
	$(BIN)/python bench/run.py $(BENCH)

# Everything for development: probed (editable) and the test tools.
setup: $(VENV)/.test

# What `probed serve` needs: probed (editable) and its runtime dependencies.
$(VENV)/.runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

# The test extra on top: pytest, linters, and the Python servers the tests run.
$(VENV)/.test: $(VENV)/.runtime
	$(PIP) -e '.[test]'
	touch $@

test-deps:
	scripts/install-test-deps.sh

lint: setup
	$(BIN)/ruff check probed tests bench
	$(BIN)/ruff format --check probed tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
