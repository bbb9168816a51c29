"""Judging a rolled verdict window: the thresholds' verdict, and what the generator makes of it.

:func:`judge_window` is the verdict step the runner calls once per window: from the rolled
window (summaries, samples with their counts at each limit, idle endpoints, loop lag,
kernel-stamped reads, late starts, thresholds) it makes the whole result, ``passed``,
``failed`` or ``generator_bound``, with the reasons. The thresholds are judged by
:mod:`loadsvc.verdict`. What the generator's lag may excuse is :mod:`loadsvc.lag`'s rule, per
threshold and endpoint: on the loop rule only a busy generator (loop lag p99 over the trust
limit), and only breaches no larger than its lag p99; on a kernel-timed WS delivery latency
only frames that shared a read, and only breaches within what they can move the quantile.
A window whose users the generator started late, short of the load its shape asked for, does
not pass (:mod:`loadsvc.shortfall`). :class:`RunResult` is what a run (or a window of a
continuous one) ends with: the judged window and the run's own facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from loadsvc.config.spec import ScenarioThresholds
from loadsvc.lag import NO_READS, ReadTiming, Rule, Timing
from loadsvc.latency import LatencySamples, rank_shift
from loadsvc.runstats import EndpointSummary, with_percentiles
from loadsvc.shortfall import NONE_LATE, LoadShortfall
from loadsvc.verdict import (
    LATENCY_THRESHOLDS,
    REPORTED_QUANTILES,
    Verdict,
    clocks_of,
    judge,
    rule_for,
    trust_limit,
)

WindowResult = Literal["passed", "failed", "generator_bound"]


@dataclass(frozen=True)
class RolledWindow:
    """A verdict window swapped out of a run: everything judging it needs, nothing live."""

    thresholds: ScenarioThresholds
    measured: Sequence[tuple[EndpointSummary, LatencySamples]]
    idle: frozenset[str] = frozenset()  # endpoints without a user on this shard all window
    loop_lag_p99_s: float | None = None  # None: the loop was not watched
    reads: ReadTiming = NO_READS  # kernel-stamped reads over the window
    starts: LoadShortfall = NONE_LATE  # users the generator started late (loadsvc.shortfall)


@dataclass(frozen=True)
class WindowVerdict:
    """The whole result of a window: judgements, result, reasons, endpoints with percentiles."""

    verdict: Verdict
    result: WindowResult
    reasons: tuple[str, ...]  # why it did not pass; empty when it passed
    endpoints: tuple[EndpointSummary, ...]
    loop_lag_p99_s: float | None = None
    loop_lag_limit_s: float | None = None  # above it, latencies may be the generator's
    reads: ReadTiming = NO_READS
    starts: LoadShortfall = NONE_LATE

    @property
    def passed(self) -> bool:
        """Every threshold held."""
        return self.result == "passed"


def shared_shifts(
    verdict: Verdict, measured: Iterable[tuple[EndpointSummary, LatencySamples]], shared: int
) -> tuple[tuple[str, float, float], ...]:
    """What ``shared`` frames that shared a read can have moved each endpoint's reported and
    judged quantiles by (:func:`loadsvc.latency.rank_shift`; see :class:`loadsvc.lag.ReadTiming`):
    were all of them among the samples above a quantile and truly below it, it would be the
    value ``shared`` ranks lower. ``shared`` counts the frames of the whole loop, so over one
    endpoint's samples it is an upper bound."""
    out = []
    for summary, samples in measured:
        judged = {
            j.quantile
            for j in verdict.judgements
            if j.endpoint == summary.endpoint and j.quantile is not None
        }
        for q in sorted(judged.union(REPORTED_QUANTILES)):
            out.append((summary.endpoint, q, rank_shift(samples, shared, q)))
    return tuple(out)


def judge_window(window: RolledWindow) -> WindowVerdict:
    """Judge a rolled window: O(n) in its samples, so the runner calls it off the loop."""
    completed = [with_percentiles(s, samples) for s, samples in window.measured]
    pairs = [(c, samples) for c, (_, samples) in zip(completed, window.measured, strict=True)]
    verdict = judge(window.thresholds, pairs, idle=window.idle)
    reasons = tuple(j.describe() for j in verdict.breached())
    result: WindowResult = "passed" if verdict.passed else "failed"
    limit = trust_limit(window.thresholds)
    reads = window.reads
    if reads.shared_frames:
        reads = replace(reads, shifts=shared_shifts(verdict, pairs, reads.shared_frames))
    timing = Timing(window.loop_lag_p99_s, limit, reads)
    clocks = clocks_of(completed)
    starts = window.starts
    if starts.short:
        # Less load than the shape asked for: a pass is not proven for the load asked, so
        # it is the generator's result; a breach under less load is still the backend's.
        reasons += (starts.reason(breached=not verdict.passed),)
        if verdict.passed:
            result = "generator_bound"
    if not verdict.passed:
        busy = busy_reason(verdict, timing, clocks)
        if busy:
            reasons += (busy,)  # last: loadsvc.report.busy_reason reads it there
        # Only a latency breach the generator could account for (under its endpoint's
        # rule) is its doing; no data, errors, TLS, skewed clocks, or a breach beyond
        # what it adds are the backend's.
        if verdict.explained_by(timing, clocks):
            result = "generator_bound"
    return WindowVerdict(
        verdict, result, reasons, tuple(completed), window.loop_lag_p99_s, limit, reads, starts
    )


def busy_line(timing: Timing, rule: Rule) -> str:
    """Why the generator is busy under ``rule``, in words (the summary's, the page's)."""
    if rule == "kernel":
        r = timing.reads
        delay = "-" if r.read_delay_p99_s is None else f"{r.read_delay_p99_s * 1000:.1f} ms"
        return (
            f"{r.shared_frames} frames shared a read (the generator fell behind them, or "
            f"they came together; read delay {r.delay_s * 1000:.1f} ms, stamp-to-read p99 {delay})"
        )
    lag, limit = timing.lag_p99_s or 0.0, timing.limit_s or 0.0
    return (
        f"event-loop lag p99 {lag * 1000:.1f} ms is over {limit * 1000:g} ms "
        "(the generator was busy)"
    )


def busy_reason(verdict: Verdict, timing: Timing, clocks: Mapping[str, str | None]) -> str:
    """What the busy generator means for this window's breaches, in one line ("" when it was
    not busy under the rule of any breach)."""
    # The loop's lag is said whenever it was high, also where it cannot excuse anything.
    rules = verdict.busy_rules(timing, clocks)
    if timing.busy("loop"):
        rules.add("loop")
    if not rules:
        return ""
    busy = "; ".join(busy_line(timing, r) for r in sorted(rules, reverse=True))
    what = "the lag" if rules == {"loop"} else "what the generator adds"
    if verdict.explained_by(timing, clocks):
        return f"{busy}: every breach is within {what}, so the excess is not certain"
    beyond = []
    for j in verdict.breached():
        if j.name not in LATENCY_THRESHOLDS or j.value is None:
            continue
        rule = rule_for(j, clocks)
        if timing.busy(rule) and not timing.explains(
            j.value, j.limit, rule, j.endpoint, j.quantile
        ):
            over = timing.adjusted(j.value, rule, j.endpoint, j.quantile) - j.limit
            line = f"{j.endpoint} {j.name} {over * 1000:.1f} ms"
            if rule == "kernel" and j.quantile is not None:
                # The read delay above is the worst wait; a quantile is excused by what the
                # shared frames can move it (lag.ReadTiming), which the reader must see.
                added = timing.excusable_s(rule, j.endpoint, j.quantile) or 0.0
                line += f" (the generator may have added {added * 1000:.1f} ms to its p{j.quantile * 100:g})"
            beyond.append(line)
        elif not timing.busy(rule) and rule == "kernel":
            beyond.append(f"{j.endpoint} {j.name} (kernel-timed: the loop lag cannot move it)")
    if beyond:
        return f"{busy}, but {what} cannot explain the breach: beyond {what} by " + ", ".join(
            beyond
        )
    return f"{busy}; the failure is not a latency {what} could explain"


@dataclass(frozen=True)
class RunResult:
    """A finished run (or verdict window of a continuous run)."""

    scenario: str
    run_id: str
    started_at: float  # wall clock
    ended_at: float
    planned_s: float | None
    verdict: Verdict
    endpoints: tuple[EndpointSummary, ...]
    result: str  # passed | failed | generator_bound | error
    loop_lag_p99_s: float | None = None
    loop_lag_limit_s: float | None = None  # above it, latencies may be the generator's
    reads: ReadTiming = NO_READS  # kernel-stamped reads (loadsvc.lag's kernel rule)
    starts: LoadShortfall = NONE_LATE  # users started more than a tick late
    stopped_early: bool = False
    shard: str = "0/1"
    reasons: tuple[str, ...] = ()  # why it did not pass (judge_window)

    @property
    def passed(self) -> bool:
        """The verdict held, under the load the shape asked for (loadsvc.shortfall)."""
        return self.result == "passed"

    @property
    def timing(self) -> Timing:
        """The generator's own timing over the run (what :mod:`loadsvc.lag` judges)."""
        return Timing(self.loop_lag_p99_s, self.loop_lag_limit_s, self.reads)
