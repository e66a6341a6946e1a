# Two commands a newcomer needs: `make run` and `make test`. Both set up
# everything they need first (a virtualenv in .venv, and for the tests the
# system binaries the suite runs for real).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench setup test-deps lint clean

run: setup
	$(BIN)/probed serve

test: setup test-deps lint
	$(BIN)/pytest

# Regenerates docs/benchmarks.md (about 5 minutes; BENCH_QUICK=1 for a short trial run).
bench: setup
	bench/setup.sh
	$(BIN)/python bench/run.py

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

test-deps:
	scripts/install-test-deps.sh

lint: setup
	$(BIN)/ruff check probed tests bench
	$(BIN)/ruff format --check probed tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
