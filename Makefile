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

# The suite in two phases (tests/conftest.py SERIAL says which tests are serial, their lane,
# and why): first everything else spread over TEST_WORKERS pytest-xdist workers, a file per
# worker at a time (module fixtures start once); then the serial tests by lane, each lane a
# pytest process running its tests one at a time: `waits` (tests waiting on real alert and
# verdict windows) beside `quiet` (tests asserting within ms, light on CPU), then `alone` (the
# tests that load the cores) by itself. The quiet lane prints as it goes, the waits lane's
# output follows it. Every phase and lane always runs; the target fails if any did.
TEST_WORKERS ?= 3
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider
test: install  ## install the real components (Prometheus, Alertmanager, linters) and run everything
	bash .ci/install-system-deps
	PYTHON=$(BIN)/python bash .ci/install-deploy-tools
	$(MAKE) --no-print-directory lint
	@status=0; lanes=$$(mktemp -d); \
	echo "== phase 1: parallel ($(TEST_WORKERS) workers)"; \
	$(PYTEST) -m 'not serial' -n $(TEST_WORKERS) --dist loadfile --durations=15 || status=$$?; \
	echo "== phase 2: serial, lanes waits and quiet at once; lane quiet:"; \
	$(PYTEST) -m 'serial and waits' --basetemp=$$lanes/waits --durations=15 >$$lanes/waits.log 2>&1 & \
	waits=$$!; \
	$(PYTEST) -m 'serial and quiet' --basetemp=$$lanes/quiet --durations=15 || status=$$?; \
	wait $$waits || status=$$?; \
	echo "== phase 2, lane waits:"; cat $$lanes/waits.log; rm -rf $$lanes; \
	echo "== phase 2, lane alone:"; \
	$(PYTEST) -m 'serial and alone' --durations=15 || status=$$?; \
	exit $$status

SOAK_DURATION ?= 30m
SOAK_RESTARTS ?= 10
soak: install  ## the seed under `loadsvc serve` for SOAK_DURATION with SOAK_RESTARTS target restarts and faults, the burst and storm in step with them; table + plot (bench/soak.py)
	$(BIN)/python bench/soak.py --duration $(SOAK_DURATION) --restarts $(SOAK_RESTARTS) $(SOAK_ARGS)

soak-accelerated: install  ## 40 target restarts in ~6 minutes: memory after restart 2N against N, growth per day fitted
	$(BIN)/python bench/soak.py --accelerated $(SOAK_ARGS)

render: install  ## regenerate the alert rules and dashboards from the thresholds
	$(BIN)/loadsvc render

bench: install  ## the benchmark table (bench/)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
