"""The supervisor against the real reference target: skips, windows, restarts, stop, reload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunResult, ScenarioRun
from loadsvc.service.history import RunHistory
from loadsvc.service.scheduler import ScenarioScheduler
from loadsvc.service.supervisor import (
    AlreadyRunning,
    NotRunning,
    RestartBackoff,
    Supervisor,
    UnknownScenario,
)
from loadsvc.target.testing import RunningTarget
from loadsvc.users import Target
from tests.support.timing import wait_for_async

FAST_BACKOFF = RestartBackoff(initial_s=0.05, max_s=0.4, multiplier=2.0)

# Windows of 300 ms are shorter than the target's 500 ms throttle, so some hold no
# frame at all; these lifecycle tests turn the no-data check off (min_samples: 0).
STREAM = """\
  stream:
    schedule: {kind: continuous, verdict_every: 300ms}
    shape: {kind: constant, users: USERS}
    thresholds: {ws_delivery_latency: {min_samples: 0}}
    users:
      - {kind: ws_stream, path: /ws/market}
"""
POLL = """\
  poll:
    schedule: SCHEDULE
    shape: {kind: constant, users: 1, duration: DURATION}
    users:
      - kind: rest
        pacing: 100ms
        tasks: [{path: /api/market/snapshot}]
"""


def scenarios(*blocks: str) -> tuple[ScenarioSpec, ...]:
    """Scenarios from YAML blocks (indented two spaces under ``scenarios:``)."""
    return parse_config("version: 1\nscenarios:\n" + "".join(blocks), "test.yaml").scenarios


def stream(users: int = 2) -> str:
    """A continuous WS scenario judged every 300 ms."""
    return STREAM.replace("USERS", str(users))


def poll(schedule: str = "{kind: manual}", duration: str = "1s") -> str:
    """A REST scenario of one paced user."""
    return POLL.replace("SCHEDULE", schedule).replace("DURATION", duration)


@pytest.fixture
async def supervisor(
    target: RunningTarget, registry: CollectorRegistry, tmp_path: Path
) -> AsyncIterator[Supervisor]:
    """A supervisor of runs against the in-process target, shut down after the test."""
    recorder = Recorder(create_metrics(registry))
    history = RunHistory(tmp_path / "h.jsonl", 1_000_000, 3600)
    sup = Supervisor(Target(target.url), recorder, history, tick_s=0.05, backoff=FAST_BACKOFF)
    try:
        yield sup
    finally:
        await sup.shutdown(5)


async def test_trigger_during_a_run_is_skipped_and_counted(
    supervisor: Supervisor, registry: CollectorRegistry
) -> None:
    """Every 1 s with 2.5 s runs: triggers that find the run going are skipped and counted."""
    supervisor.apply(scenarios(poll("{kind: interval, every: 1s}", "2500ms")))
    scheduler = ScenarioScheduler(supervisor.fire)
    scheduler.apply(supervisor_specs(supervisor))
    scheduler.start()
    try:

        def skipped() -> float:
            value = registry.get_sample_value(
                "loadsvc_scenario_triggers_skipped_total", {"scenario": "poll"}
            )
            return value or 0.0

        await wait_for_async(lambda: skipped() >= 1, 6, "a skipped trigger")
        state = supervisor.state("poll")
        assert state.running and state.skipped == skipped()
        assert registry.get_sample_value("loadsvc_scenario_running", {"scenario": "poll"}) == 1
    finally:
        scheduler.shutdown()


def supervisor_specs(supervisor: Supervisor) -> list[ScenarioSpec]:
    """The specs the supervisor runs now."""
    return [supervisor.state(n).spec for n in supervisor.names()]


async def test_continuous_run_is_judged_in_windows_on_the_same_connections(
    supervisor: Supervisor, target: RunningTarget, registry: CollectorRegistry
) -> None:
    """A continuous run rolls a verdict window every verdict_every; its connections stay open."""
    supervisor.apply(scenarios(stream(users=3)))
    await wait_for_async(lambda: len(supervisor.history.recent("stream")) >= 3, 10, "three windows")
    windows = supervisor.history.recent("stream")
    assert len({w["run_id"] for w in windows}) == 1
    assert [w["window"] for w in reversed(windows)][:3] == [1, 2, 3]
    assert all(w["trigger"] == "continuous" and not w["stopped_early"] for w in windows)
    assert sum(w["endpoints"][0]["count"] for w in windows) > 0
    stats = await target.stats()
    assert stats["handshakes"]["/ws/market"] == 3  # never reconnected between windows
    passed = registry.get_sample_value(
        "loadsvc_scenario_runs_total", {"scenario": "stream", "result": "passed"}
    )
    assert passed is not None and passed >= 3


async def test_stop_holds_a_continuous_scenario_until_started_again(
    supervisor: Supervisor,
) -> None:
    """An operator's stop ends the run with a final record and no restart; start resumes it."""
    supervisor.apply(scenarios(stream()))
    await wait_for_async(lambda: supervisor.state("stream").users == 2, 5, "two users")
    first = supervisor.stop("stream")
    await wait_for_async(lambda: not supervisor.state("stream").running, 10, "the run ended")
    last = supervisor.history.last("stream")
    assert last is not None and last["run_id"] == first and last["stopped_early"]
    state = supervisor.state("stream")
    assert state.held and state.restarts == 0
    with pytest.raises(NotRunning):
        supervisor.stop("stream")
    supervisor.start("stream")
    await wait_for_async(lambda: supervisor.state("stream").users == 2, 5, "running again")
    assert supervisor.state("stream").run_id != first
    with pytest.raises(AlreadyRunning):
        supervisor.start("stream")
    with pytest.raises(UnknownScenario):
        supervisor.start("nope")


async def test_continuous_ramping_run_restarts_after_its_plan(supervisor: Supervisor) -> None:
    """A continuous scenario whose shape has an end is started again when a run ends."""
    supervisor.apply(
        scenarios(
            """\
  ramp:
    schedule: {kind: continuous, verdict_every: 1h}
    shape: {kind: ramping, stages: [{duration: 300ms, target: 2}]}
    users:
      - {kind: ws_stream, path: /ws/market}
"""
        )
    )
    await wait_for_async(lambda: supervisor.state("ramp").restarts >= 2, 10, "two restarts")
    runs = supervisor.history.recent("ramp")
    assert len({r["run_id"] for r in runs}) >= 2
    assert all(not r["stopped_early"] for r in runs)


async def test_crashed_continuous_run_is_recorded_and_restarted_with_backoff(
    target: RunningTarget, registry: CollectorRegistry, tmp_path: Path
) -> None:
    """A run that raises is recorded as an error and restarted after growing delays."""

    class CrashingRun(ScenarioRun):
        async def execute(self) -> RunResult:
            await asyncio.sleep(0.01)
            raise RuntimeError("boom")

    class CrashingSupervisor(Supervisor):
        def _new_run(self, spec: ScenarioSpec) -> ScenarioRun:
            return CrashingRun(spec, self.target, self.recorder)

    recorder = Recorder(create_metrics(registry))
    history = RunHistory(tmp_path / "h.jsonl", 1_000_000, 3600)
    sup = CrashingSupervisor(Target(target.url), recorder, history, backoff=FAST_BACKOFF)
    try:
        sup.apply(scenarios(stream()))
        await wait_for_async(lambda: sup.state("stream").restarts >= 3, 5, "three restarts")
        runs = history.recent("stream")
        assert {r["result"] for r in runs} == {"error"}
        assert runs[0]["error"] == "RuntimeError"
        errors = registry.get_sample_value(
            "loadsvc_scenario_runs_total", {"scenario": "stream", "result": "error"}
        )
        assert errors is not None and errors >= 3
        await wait_for_async(
            lambda: sup.state("stream").restart_at is not None, 5, "a restart pending"
        )
    finally:
        await sup.shutdown(5)


async def test_reload_restarts_changed_continuous_and_stops_removed(
    supervisor: Supervisor,
) -> None:
    """apply(): a changed continuous scenario restarts with its new spec; a removed one stops."""
    supervisor.apply(scenarios(stream(users=2), poll(duration="1h")))
    supervisor.start("poll")
    await wait_for_async(lambda: supervisor.state("stream").users == 2, 5, "two users")
    old = supervisor.state("stream").run_id
    changes = supervisor.apply(scenarios(stream(users=3)))
    assert changes == {"added": [], "removed": ["poll"], "changed": ["stream"]}
    assert supervisor.names() == ["stream"]
    with pytest.raises(UnknownScenario):
        supervisor.state("poll")
    await wait_for_async(lambda: supervisor.state("stream").users == 3, 5, "three users")
    assert supervisor.state("stream").run_id != old
    await wait_for_async(
        lambda: supervisor.history.last("poll") is not None, 10, "poll's final record"
    )


async def test_shutdown_records_every_verdict_within_the_bound(supervisor: Supervisor) -> None:
    """shutdown() stops a long run and a continuous one, recording both, well within its bound."""
    supervisor.apply(scenarios(stream(), poll(duration="1h")))
    run_id = supervisor.start("poll")
    await wait_for_async(lambda: supervisor.state("stream").users == 2, 5, "stream running")
    began = time.monotonic()
    await supervisor.shutdown(5)
    assert time.monotonic() - began < 5
    poll_last = supervisor.history.last("poll")
    assert poll_last is not None and poll_last["run_id"] == run_id and poll_last["stopped_early"]
    stream_last = supervisor.history.last("stream")
    assert stream_last is not None and stream_last["stopped_early"]
    assert not supervisor.state("stream").running
    with pytest.raises(AlreadyRunning):
        supervisor.start("poll")


class BrokenHistory(RunHistory):
    """A history whose every append fails the way a bug or an encoder error would."""

    def append(self, doc: dict[str, object]) -> None:
        """Raise instead of writing."""
        raise TypeError("Integer exceeds 64-bit range")


async def test_failed_window_records_never_orphan_a_continuous_run(
    target: RunningTarget, registry: CollectorRegistry, tmp_path: Path
) -> None:
    """Windows whose record raises are counted; the run goes on, then stops with no connection left."""
    recorder = Recorder(create_metrics(registry))
    history = BrokenHistory(tmp_path / "h.jsonl", 1_000_000, 3600)
    sup = Supervisor(Target(target.url), recorder, history, tick_s=0.05, backoff=FAST_BACKOFF)
    try:
        sup.apply(scenarios(stream(users=2)))
        await wait_for_async(lambda: sup.records.failures >= 3, 10, "three failed window records")
        state = sup.state("stream")
        assert state.running and state.users == 2 and state.restarts == 0
        assert state.record_failures >= 3
        assert state.last is not None and state.last["record_error"] == "TypeError"
        stats = await target.stats()
        assert stats["connections"]["/ws/market"] == 2
        assert stats["handshakes"]["/ws/market"] == 2  # the same run and connections throughout
    finally:
        await sup.shutdown(5)
    assert not sup.state("stream").running

    async def all_closed() -> bool:
        return int((await target.stats())["connections"]["/ws/market"]) == 0

    await wait_for_async(all_closed, 5, "every WS connection closed at the target")
