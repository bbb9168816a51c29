# loadsvc — the two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install demo test lint unit bench soak soak-accelerated render clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $@

install: $(BIN)/.installed  ## the package and its test tools, in .venv

# The demo needs the package alone (no test or benchmark tools): a few seconds, not minutes.
$(BIN)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

DEMO_ARGS ?=
demo: $(BIN)/.demo-installed  ## the reference target + loadsvc serve, small profile (DEMO_ARGS=--seed: full size)
	$(BIN)/loadsvc demo $(DEMO_ARGS)

lint: install  ## ruff and mypy --strict
	$(BIN)/ruff check loadsvc tests bench
	$(BIN)/ruff format --check loadsvc tests bench
	$(BIN)/mypy

test: install  ## install the real components (Prometheus, Alertmanager, linters) and run everything
	bash .ci/install-system-deps
	PYTHON=$(BIN)/python bash .ci/install-deploy-tools
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

SOAK_DURATION ?= 30m
SOAK_RESTARTS ?= 10
soak: install  ## the seed under `loadsvc serve` for SOAK_DURATION with SOAK_RESTARTS target restarts and faults; table + plot (bench/soak.py)
	$(BIN)/python bench/soak.py --duration $(SOAK_DURATION) --restarts $(SOAK_RESTARTS) $(SOAK_ARGS)

soak-accelerated: install  ## 40 target restarts in ~6 minutes: memory after restart 2N against N, growth per day fitted
	$(BIN)/python bench/soak.py --accelerated $(SOAK_ARGS)

render: install  ## regenerate the alert rules and dashboards from the thresholds
	$(BIN)/loadsvc render

bench: install  ## the benchmark table (bench/)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
