"""A window whose users the generator started late had less load than its shape asked for:
a pass is not one (``generator_bound``); a breach stays the backend's."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from loadsvc.config.spec import ScenarioThresholds
from loadsvc.headline import final_line
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.report import summary_body, summary_doc, summary_table
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.runstats import EndpointStats
from loadsvc.shortfall import SHORT_SHARE, LateTally, LoadShortfall
from loadsvc.target.testing import RunningTarget
from loadsvc.users import Target
from loadsvc.window import RolledWindow, judge_window
from tests.test_runner import scenario


def _http(latencies: list[float]) -> EndpointStats:
    stats = EndpointStats("/api/x", "http", "GET", now=0.0)
    for v in latencies:
        stats.add_outcome("ok", False)
        stats.latency.add(v)
    return stats


def _window(latency: float, starts: LoadShortfall) -> RolledWindow:
    return RolledWindow(ScenarioThresholds(), [_http([latency] * 100).roll(1.0)], starts=starts)


def test_a_pass_under_less_load_than_asked_is_generator_bound_and_says_how_much() -> None:
    """Thresholds held, but the late starts missed 3 % of the asked user-seconds: not a pass."""
    short = LoadShortfall(late=24, late_user_s=30.0, worst_s=1.6, asked_user_s=1000.0)
    judged = judge_window(_window(0.01, short))
    assert judged.verdict.passed and judged.result == "generator_bound" and not judged.passed
    (reason,) = judged.reasons
    assert "started 24 users more than a tick late (up to 1.6 s; 3.0 %" in reason
    assert "a pass is not certain" in reason


def test_a_breach_under_less_load_stays_failed() -> None:
    """A breach under less load than asked would be one under the load asked: the backend's."""
    short = LoadShortfall(late=24, late_user_s=30.0, worst_s=1.6, asked_user_s=1000.0)
    judged = judge_window(_window(0.5, short))  # p95 500 ms against 200
    assert judged.result == "failed"
    assert any("BREACHED" in r for r in judged.reasons)
    assert any("short of the shape's" in r for r in judged.reasons)
    assert any("a breach under less load is still the backend's" in r for r in judged.reasons)


def test_late_starts_within_the_share_leave_a_pass_alone() -> None:
    """A few late users in a long window (under SHORT_SHARE of its user-seconds) pass; none late
    is never short, whatever the asked load (a window that asked for none)."""
    few = LoadShortfall(late=2, late_user_s=1.0, worst_s=1.2, asked_user_s=1.0 / SHORT_SHARE * 2)
    judged = judge_window(_window(0.01, few))
    assert judged.result == "passed" and judged.reasons == () and not few.short
    assert "within 1 %" in few.line()
    assert not LoadShortfall(asked_user_s=0.0).short


def test_the_tally_is_taken_per_window() -> None:
    """What the pacer reports late goes into one window; the next starts at none."""
    tally = LateTally()
    tally.add(1.5)
    tally.add(2.5)
    first = tally.take(asked_user_s=50.0)
    assert (first.late, first.late_user_s, first.worst_s, first.share) == (2, 4.0, 2.5, 0.08)
    second = tally.take(asked_user_s=50.0)
    assert (second.late, second.late_user_s, second.short) == (0, 0.0, False)


def test_the_last_line_says_the_load_was_short_not_that_it_breached() -> None:
    """A generator-bound run whose thresholds held says why, not "breached"."""
    short = LoadShortfall(late=24, late_user_s=30.0, worst_s=1.6, asked_user_s=1000.0)
    line = final_line("s", "generator_bound", False, short=short.reason())
    assert line.startswith("s: GENERATOR-BOUND (the generator started 24 users")
    assert "breached" not in line


POLL = """
shape: {kind: constant, users: 40, duration: 4s, spawn_rate: 40}
thresholds:
  http_latency: {quantile: 0.95, max: 3s}
users:
  - kind: rest
    pacing: 200ms
    tasks:
      - {path: /api/market/foreign-detail, required_keys: [summary, stocks]}
"""


async def _run(
    target: RunningTarget, metrics: Metrics, stall_s: float, at_s: float = 0.05, body: str = POLL
) -> ScenarioRun:
    run = ScenarioRun(
        scenario(body), Target(target.url), Recorder(metrics), RunOptions(tick_s=1.0, seed=1)
    )
    if stall_s:
        # The loop blocked (a descheduled or overloaded generator): at 0.05 s, while the first
        # tick's starts are due (0-0.9 s), every user due before ~0.6 s is made more than a
        # tick late.
        asyncio.get_running_loop().call_later(at_s, time.sleep, stall_s)
    return run


async def test_a_run_whose_starts_the_generator_stalled_does_not_pass(
    target: RunningTarget, registry: CollectorRegistry, metrics: Metrics
) -> None:
    """40 users due over the first second, the loop stalled 1.6 s: the run's own requests all
    within their threshold, but the users came late. Without the stall the same run passes."""
    run = await _run(target, metrics, 1.6)
    stalled = await run.execute()
    starts = stalled.starts
    # The run's totals (what the live judgement diffs) are the one window's.
    assert run.stats is not None and run.stats.starts.late_users == starts.late
    assert run.stats.starts.asked_user_s == pytest.approx(starts.asked_user_s)
    assert starts.late >= 15 and starts.worst_s >= 1.0 and starts.short, starts
    assert stalled.verdict.passed and stalled.result == "generator_bound" and not stalled.passed
    assert any("more than a tick late" in r for r in stalled.reasons), stalled.reasons
    doc = summary_doc(stalled, target.url)
    assert doc["passed"] is False and doc["late_starts"]["short"] is True
    assert doc["late_starts"]["users"] == starts.late
    assert "! the generator started" in summary_body(stalled)
    assert summary_table(stalled).endswith("a pass is not certain)")  # not "breached"
    # The metrics the scenario dashboard's users panel reads.
    get = registry.get_sample_value
    assert get("loadsvc_scenario_late_starts_total", {"scenario": "s"}) == starts.late
    missed = get("loadsvc_scenario_late_start_seconds_total", {"scenario": "s"})
    assert missed == pytest.approx(starts.late_user_s)

    calm = await (await _run(target, metrics, 0.0)).execute()
    assert calm.result == "passed" and calm.starts.late == 0, calm.reasons
    # The shape's user-seconds: 1 user in the first tick, then 40 for 3 s.
    assert 100 <= calm.starts.asked_user_s <= 130, calm.starts


async def test_a_stall_through_a_tick_makes_that_ticks_starts_late(
    target: RunningTarget, metrics: Metrics
) -> None:
    """The loop blocked from 0.9 s to 2.7 s, through the tick due at 1 s: the users that tick
    starts were due from 1 s, not from when it ran, so they are late and counted (before, they
    were due from 2.7 s and no start was late; the shape's second 40 users came 1.7 s late)."""
    ramp = POLL.replace(
        "users: 40, duration: 4s, spawn_rate: 40", "users: 80, duration: 5s, spawn_rate: 40"
    )
    run = await _run(target, metrics, 1.8, at_s=0.9, body=ramp)
    result = await run.execute()
    assert result.starts.late >= 15 and result.starts.worst_s >= 1.0, result.starts
    assert result.result != "passed" and any("tick late" in r for r in result.reasons)
