"""Shared fixtures: a real reference target on 127.0.0.1 port 0, fresh metric registries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from loadsvc.metrics import Metrics, create_metrics
from loadsvc.target.testing import RunningTarget, running_target
from tests.support import ROOT


@pytest.fixture
async def target() -> AsyncIterator[RunningTarget]:
    """The reference target, in this test's event loop, on a free port."""
    async with running_target() as t:
        yield t


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry: tests never touch the global one."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    """The metric contract on the fresh registry."""
    return create_metrics(registry)


# -- the two phases of `make test`, and the two lanes of the second ------------------------
#
# `make test` runs the suite in two phases: everything not marked `serial` spread over
# pytest-xdist workers (sleep-bound tests: a few users for a few seconds, real servers on
# port 0, each test its own tmp_path), then the `serial` tests by lane: the WAITS and QUIET
# lanes at once, each a pytest process running its tests one at a time (`pytest -m waits`,
# `pytest -m quiet`), then the ALONE lane by itself (`pytest -m alone`). Lanes are processes
# rather than xdist groups: pytest 9 ignores the group pytest-xdist 3.8 writes into the test's
# id, so `--dist loadgroup` silently spreads a group over both workers.
# A test is serial when what it asserts depends on the machine being quiet (a latency within
# a few ms, a generator that must not be busy, a ground truth against the kernel's clock), when
# it loads the cores itself (full seed sizes, benchmarks), or when it waits on real alert and
# verdict windows. The lanes:
# - WAITS: long because they wait for windows, tolerant of ~100 ms of noise; a fraction of a
#   core. But a baseline admits only windows whose generator was not busy (loop lag p99 under
#   10 ms), so the ones that need one (the e2e dashboards' baseline panels) must not run
#   beside a test that loads the cores;
# - QUIET: assertions within a few ms, busy-generator and kernel-clock verdicts, light on CPU;
# - ALONE: the tests that load the cores (full seed sizes, 252 users in shards, 500 streams,
#   benchmarks, floods, hammering) and the baseline judgements that a neighbour's load turned
#   into "no baseline" (test_workers, the e2e dashboards): nothing runs beside them.
# Measured with two lanes only (waits beside quiet holding the ALONE tests as well): the
# e2e dashboards' baseline panels stayed empty, test_workers had no baseline and the full
# seed breached its p99 (2 runs); see the README's test notes for the times.
# A long CPU-bound check whose result cannot depend on time stays in the parallel phase at the
# lowest CPU priority instead (promtool's unit tests: `niceness=19`). Plain `pytest` runs
# everything in one process, serial tests included, one at a time.
WAITS = "waits"
QUIET = "quiet"
ALONE = "alone"
LANES = (WAITS, QUIET, ALONE)

# Where it is (a directory, a file, or a file::test), its lane, and why it is serial.
SERIAL: dict[str, tuple[str, str]] = {
    # 10 s windows of real latencies; its dashboards' baseline panels need a baseline within
    # ~100 s, of windows whose generator was not busy: red 3 runs of 3 beside another lane
    "tests/e2e/test_alerting_e2e.py": (
        ALONE,
        "alerts fire on 10 s windows of real latencies; a busy machine fires or delays them",
    ),
    "tests/e2e/test_drift_e2e.py": (WAITS, "a drift judged on 2 s windows, +1 or +3 ms a window"),
    "tests/e2e/test_regression_e2e.py": (WAITS, "+30 ms on 5 s windows pages, then resolves"),
    "tests/test_seed.py::test_each_seed_scenario_runs_5_users_for_30s_without_errors": (
        WAITS,
        "the seed's scenarios for 30 s each, judged against their thresholds",
    ),
    "tests/test_seed.py::test_full_seed_sizes_run_without_the_generator_breaching": (
        ALONE,
        "the seed's full sizes (500 + 500 users) load both cores",
    ),
    "tests/test_demo.py": (WAITS, "the demo profile must stay healthy for several live windows"),
    "tests/scale/test_shards.py": (ALONE, "252 users; p95 of shards and of one process must agree"),
    "tests/service/test_serve_soak.py": (
        ALONE,
        "the full default configuration: 500 streams, 250 req/s",
    ),
    "tests/service/test_live_status.py": (
        WAITS,
        "a live window judged no data then recovered on time",
    ),
    "tests/bench/test_bench_smoke.py": (ALONE, "benchmarks: they saturate the loop on purpose"),
    "tests/bench/test_idle_cost.py": (ALONE, "bench trials pinned to both cores"),
    "tests/bench/test_bench_truth.py": (QUIET, "accuracy rows against the ground truth, within ms"),
    "tests/bench/test_soak.py": (WAITS, "a toy soak: restarts and recovery times"),
    "tests/bench/test_ws_arrival.py": (QUIET, "kernel against loop clock, within ms"),
    "tests/bench/test_tls_truth.py": (
        QUIET,
        "wss:// through nginx against the target's ground truth, within ms",
    ),
    "tests/bench/test_ws_frames.py": (QUIET, "a benchmark run"),
    "tests/bench/test_api_readers.py": (ALONE, "a paired benchmark run"),
    "tests/adversarial/test_verdict_busy.py": (
        QUIET,
        "a busy generator excuses only its measured lag",
    ),
    "tests/adversarial/test_verdict_kernel_busy.py": (
        QUIET,
        "kernel-timed latencies while the loop is blocked",
    ),
    "tests/adversarial/test_ws_flood.py": (ALONE, "a ping flood: CPU-bound by design"),
    "tests/adversarial/test_ws_storm.py": (
        QUIET,
        "exactly one reconnect per user per cycle, on time",
    ),
    "tests/exchange/test_truth.py": (QUIET, "latencies against the exchange's ground truth"),
    "tests/exchange/test_loadsvc_against_exchange.py": (
        QUIET,
        "judged by the exchange's ground truth, within ms",
    ),
    "tests/target/test_target_delivery.py": (
        QUIET,
        "the target's ground truth of delivery latency",
    ),
    "tests/users/test_arrival.py": (
        QUIET,
        "kernel arrival times against a blocked loop, within ms",
    ),
    "tests/users/test_stamped_tls.py": (
        QUIET,
        "kernel arrival times over TLS against a blocked loop, within ms",
    ),
    "tests/test_runner.py::test_a_ticks_users_connect_spread_over_the_tick_and_count_at_once": (
        QUIET,
        "handshakes ~0.1 s apart: a loaded loop bunches timers",
    ),
    "tests/users/test_ws_restarts.py::test_a_target_killed_under_the_clients_leaves_no_cyclic_garbage": (
        QUIET,
        "40 clients must all be back within the deadline after a restart",
    ),
    "tests/test_loopmon.py": (QUIET, "the loop-lag monitor's busy judgement measures real lag"),
    "tests/web/test_generator.py": (QUIET, "the page says busy exactly when the generator is"),
    "tests/web/test_headlines.py::test_a_fault_is_named_on_the_page_with_value_limit_and_excess_and_clears": (
        WAITS,
        "a 300 ms fault's value, limit and excess on the page, then cleared",
    ),
    # +30 ms against a baseline of real runs: a generator busy by others' load makes it uncertain
    "tests/test_compare.py": (
        QUIET,
        "its module's baseline is two real runs of 6 requests that must pass",
    ),
    "tests/adversarial/test_http_resources.py": (
        ALONE,
        "hostile bodies cut off on time by a hammering run",
    ),
    "tests/adversarial/test_ws_conversation_hostile.py::test_a_ping_flood_from_a_server_that_never_reads_keeps_memory_bounded": (
        ALONE,
        "a flood of 1,000+ pings in 1.2 s",
    ),
    "tests/web/test_report.py::test_report_of_a_run_judged_against_a_baseline_shows_the_regression": (
        QUIET,
        "+30 ms",
    ),
    "tests/service/test_workers.py::test_each_worker_judges_its_share_and_accepting_reaches_both": (
        ALONE,
        "+30 ms",
    ),
    "tests/users/test_backoff.py::test_clients_return_after_a_target_restart_at_the_pace_and_all_of_them": (
        QUIET,
        "handshakes per poll against the pace: a late poller sees a burst",
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``serial`` marker and a marker per lane (see SERIAL)."""
    config.addinivalue_line(
        "markers", "serial: run after the parallel phase of `make test`, in its lane (see SERIAL)"
    )
    for lane in LANES:
        config.addinivalue_line("markers", f"{lane}: a serial test of the {lane} lane (see SERIAL)")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under a SERIAL path ``serial`` and with its lane (``waits``, ``quiet``, ``alone``);
    a SERIAL path that names nothing, or a test in two lanes, fails (a renamed file or test
    would otherwise slip into the parallel phase unnoticed)."""
    matched: set[str] = set()
    for item in items:
        hits = {where for where in SERIAL if is_under(item.nodeid, where)}
        if hits:
            lanes = {SERIAL[where][0] for where in hits}
            if len(lanes) != 1 or not lanes <= set(LANES):
                raise pytest.UsageError(
                    f"tests/conftest.py SERIAL puts {item.nodeid} in lanes {lanes}"
                )
            item.add_marker(pytest.mark.serial)
            item.add_marker(getattr(pytest.mark, lanes.pop()))
            matched |= hits
    files = {item.nodeid.split("::")[0] for item in items}
    for where in SERIAL.keys() - matched:
        file = where.split("::")[0]
        if not (ROOT / file).exists() or ("::" in where and file in files):
            raise pytest.UsageError(f"tests/conftest.py SERIAL names {where}: no such test")


def is_under(nodeid: str, where: str) -> bool:
    """True when the test ``nodeid`` is ``where`` or inside it (a directory, file or test)."""
    if where.endswith("/"):
        return nodeid.startswith(where)
    return nodeid == where or nodeid.startswith((f"{where}::", f"{where}["))
