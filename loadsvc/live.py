"""Live judgement: each running scenario judged over the last minute, besides its verdict windows.

A verdict window of a continuous scenario is minutes long, so a fault shows in
its verdict only when the window ends. The live judgement is the same
judgement (a :class:`~loadsvc.verdict.Judgement` per threshold, so it reads the
same everywhere) made every second over a short sliding window (default
60 s, ``LOADSVC_LIVE_WINDOW``) from the per-second intervals the sampler already
takes: nothing is added to the per-request path, and a breach shows (and
clears) within about one window.

Latency quantiles come from the live histogram (1 % wide buckets), so a live
value is within 1 % of the exact one; a live breach is the value shown being
over the limit, so the number and the word always agree. The lag rule is
:mod:`loadsvc.lag`'s, per endpoint by its arrival clock: ``generator_bound`` only
when the generator was busy (under each breach's rule) and explains every
breach; the kernel rule reads the loop-lag monitor's last 10 s of stamped reads.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from loadsvc.config.spec import ScenarioThresholds
from loadsvc.lag import NO_READS, ReadTiming, Timing, is_busy
from loadsvc.latency import LIVE_BUCKETS
from loadsvc.protocols import judged_endpoint
from loadsvc.shortfall import NONE_LATE, LoadShortfall
from loadsvc.timeseries import Counts, quantile_of
from loadsvc.verdict import (
    REPORTED_QUANTILES,
    Judgement,
    JudgementState,
    Verdict,
    quantile_judgement,
    trust_limit,
)

LIVE_WINDOW_S = 60.0
LIVE_WINDOW_ENV = "LOADSVC_LIVE_WINDOW"
# Before this much of a run has been seen, a live window says "starting", not "no data".
WARMUP_S = 5.0
LiveResult = Literal["starting", "idle", "passed", "failed", "generator_bound"]


def live_window_from_env(env: Mapping[str, str] = os.environ) -> float:
    """The live window in seconds from ``LOADSVC_LIVE_WINDOW`` (e.g. ``60s``, ``2m``), else 60 s.

    ValueError names the variable when the value is not a positive duration.
    """
    text = env.get(LIVE_WINDOW_ENV, "").strip()
    if not text:
        return LIVE_WINDOW_S
    from loadsvc.config import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{LIVE_WINDOW_ENV}: {exc}") from None
    if seconds <= 0:
        raise ValueError(f"{LIVE_WINDOW_ENV}: must be more than 0 s, got {text!r}")
    return seconds


@dataclass
class _Second:
    ended_at: float
    span_s: float
    events: int
    errors: int
    buckets: Counts  # indices of the non-empty latency buckets
    counts: Counts  # their counts
    manned: bool  # the endpoint had a user
    delivered: int = 0  # ws: data frames
    connection_s: float = 0.0  # ws: connections open at its end times its span


class SlidingCounts:
    """Counts and a latency histogram over the last ``window_s`` seconds, one interval at a time.

    Each interval is kept sparse (its non-empty buckets only) and added to a running
    total; an interval that falls out of the window is taken back off.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.latency = np.zeros(LIVE_BUCKETS, np.int64)
        self.events = 0
        self.errors = 0
        self.manned = 0  # intervals in the window in which the endpoint had a user
        self.stalled = 0  # ws: connections in a stall at the latest interval
        self.delivered = 0  # ws: data frames in the window
        self.connection_s = 0.0  # ws: connection-seconds in the window (from each look's count)
        self._open_before = 0  # ws: connections open at the previous look
        self.clock: str | None = None  # the endpoint's arrival clock (loadsvc.lag.rule_of)
        self._seconds: deque[_Second] = deque()

    def add(
        self,
        ended_at: float,
        span_s: float,
        events: int,
        errors: int,
        latency: Counts | None,
        manned: bool = True,
        stalled: int = 0,
        delivered: int = 0,
        connections: int = 0,
        clock: str | None = None,
    ) -> None:
        """Take one interval ending at ``ended_at`` (wall clock), and drop what is now too old;
        ws: ``stalled`` and ``connections`` at its end, ``delivered`` data frames in it;
        ``clock``: the endpoint's arrival clock so far."""
        self.stalled = stalled
        if clock is not None:
            self.clock = clock
        # The mean of the open connections at both ends: connections opened during a ramp were
        # not open all interval, and counting them so would make a healthy ramp look slow.
        connection_s = (self._open_before + connections) / 2 * span_s
        self._open_before = connections
        if latency is not None and latency.any():
            buckets = np.flatnonzero(latency)
            counts = latency[buckets].astype(np.int64)
        else:
            buckets = counts = np.zeros(0, np.int64)
        self._seconds.append(
            _Second(
                ended_at, span_s, events, errors, buckets, counts, manned, delivered, connection_s
            )
        )
        self.latency[buckets] += counts
        self.events += events
        self.errors += errors
        self.manned += manned
        self.delivered += delivered
        self.connection_s += connection_s
        self.expire(ended_at)

    def expire(self, now: float) -> None:
        """Forget the intervals that ended ``window_s`` or more before ``now``."""
        while self._seconds and self._seconds[0].ended_at <= now - self.window_s:
            old = self._seconds.popleft()
            self.latency[old.buckets] -= old.counts
            self.events -= old.events
            self.errors -= old.errors
            self.manned -= old.manned
            self.delivered -= old.delivered
            self.connection_s -= old.connection_s

    @property
    def covered_s(self) -> float:
        """How many seconds the kept intervals span (up to the window)."""
        return min(self.window_s, sum(s.span_s for s in self._seconds))

    @property
    def samples(self) -> int:
        """Latency samples in the window."""
        return int(self.latency.sum())

    def quantile(self, q: float) -> float | None:
        """The window's nearest-rank ``q`` latency quantile (live-histogram resolution)."""
        value = quantile_of(self.latency, q)
        return None if math.isnan(value) else value


@dataclass(frozen=True)
class LiveJudgement:
    """One threshold judged over the live window, and since when it has not held."""

    judgement: Judgement
    since: float | None = None  # wall clock of the first live judgement of this breach


@dataclass(frozen=True)
class LiveVerdict:
    """A scenario judged over its last ``window_s`` seconds."""

    scenario: str
    window_s: float
    covered_s: float
    result: LiveResult
    judgements: tuple[LiveJudgement, ...]
    judged_at: float
    lag_p99_s: float | None = None
    lag_limit_s: float | None = None
    reads: ReadTiming = NO_READS  # kernel-stamped reads, the monitor's last 10 s
    starts: LoadShortfall = NONE_LATE  # users started more than a tick late in the window

    @property
    def busy(self) -> bool:
        """The generator was busy: its loop lagged over the trust limit in the window
        (:func:`is_busy`), or kernel-timed frames shared reads (:class:`ReadTiming`)."""
        loop = self.lag_limit_s is not None and is_busy(self.lag_p99_s, self.lag_limit_s)
        return loop or self.reads.busy

    def breached(self) -> tuple[LiveJudgement, ...]:
        """The judgements that do not hold now."""
        return tuple(j for j in self.judgements if not j.judgement.passed)


@dataclass
class LiveJudge:
    """The live judgement of one scenario: its endpoints' sliding windows and breach starts."""

    scenario: str
    window_s: float = LIVE_WINDOW_S
    endpoints: dict[tuple[str, str], SlidingCounts] = field(default_factory=dict)
    _since: dict[tuple[str, str], float] = field(default_factory=dict)
    # Each look's (ended_at, asked user-seconds, late users, their missed user-seconds).
    _starts: deque[tuple[float, float, int, float]] = field(default_factory=deque)

    def add(
        self,
        kind: str,
        endpoint: str,
        ended_at: float,
        span_s: float,
        events: int,
        errors: int,
        latency: Counts | None,
        manned: bool = True,
        stalled: int = 0,
        delivered: int = 0,
        connections: int = 0,
        clock: str | None = None,
    ) -> None:
        """One second of one endpoint (several methods of one endpoint add up); ``manned``:
        it had a user (an endpoint without one all window, and without events, is idle);
        ws: ``stalled`` and open ``connections`` now, ``delivered`` data frames in it;
        ``clock``: its arrival clock so far (which lag rule judges it)."""
        window = self.endpoints.get((kind, endpoint))
        if window is None:
            window = self.endpoints[(kind, endpoint)] = SlidingCounts(self.window_s)
        window.add(
            ended_at, span_s, events, errors, latency, manned, stalled, delivered, connections,
            clock,
        )  # fmt: skip

    def add_starts(
        self, ended_at: float, asked_user_s: float, late: int, late_user_s: float
    ) -> None:
        """One look's starts: the user-seconds the shape asked for since the last, and the
        users started more than a tick late (loadsvc.shortfall)."""
        self._starts.append((ended_at, asked_user_s, late, late_user_s))

    def _starts_over(self, now: float) -> LoadShortfall:
        """The late starts of the window ending ``now``."""
        while self._starts and self._starts[0][0] <= now - self.window_s:
            self._starts.popleft()
        if not self._starts:
            return NONE_LATE
        _, asked, late, missed = (sum(col) for col in zip(*self._starts, strict=True))
        return LoadShortfall(int(late), missed, 0.0, asked)

    def restart(self) -> None:
        """A new run: what the previous one measured is not this one's."""
        self.endpoints.clear()
        self._since.clear()
        self._starts.clear()

    def _shifts(self, verdict: Verdict, shared: int) -> tuple[tuple[str, float, float], ...]:
        """:func:`_shift` of each endpoint's reported and judged quantiles."""
        out = []
        for (_, endpoint), window in self.endpoints.items():
            judged = {j.quantile for j in verdict.judgements if j.endpoint == endpoint}
            for q in sorted({q for q in judged if q is not None}.union(REPORTED_QUANTILES)):
                out.append((endpoint, q, _shift(window, shared, q)))
        return tuple(out)

    def judge(
        self,
        thresholds: ScenarioThresholds,
        now: float,
        lag: SlidingCounts | None = None,
        reads: ReadTiming = NO_READS,
    ) -> LiveVerdict:
        """Every threshold over the window ending ``now``, with the lag rule's result
        (``reads``: the kernel rule's figures, see :mod:`loadsvc.lag`)."""
        judged: list[LiveJudgement] = []
        covered = 0.0
        for (kind, endpoint), window in sorted(self.endpoints.items()):
            window.expire(now)
            covered = max(covered, window.covered_s)
            if window.manned == 0 and window.events == 0:
                continue  # no user all window (a shard without this group, a ramp at 0): idle
            for j in _judgements(thresholds, kind, endpoint, window):
                key = (j.endpoint, j.name)
                since = None
                if j.passed:
                    self._since.pop(key, None)
                else:
                    since = self._since.setdefault(key, now)
                judged.append(LiveJudgement(j, since))
        lag_p99 = None
        if lag is not None:
            lag.expire(now)
            lag_p99 = lag.quantile(0.99)
        limit = trust_limit(thresholds)
        verdict = Verdict(tuple(j.judgement for j in judged))
        clocks = {endpoint: w.clock for (_, endpoint), w in self.endpoints.items()}
        starts = self._starts_over(now)
        if reads.shared_frames:  # what they can do to each endpoint's quantiles (lag.ReadTiming)
            reads = replace(reads, shifts=self._shifts(verdict, reads.shared_frames))
        result: LiveResult
        warming = covered < min(WARMUP_S, self.window_s)
        if warming and all(j.state != "breached" for j in verdict.judgements):
            result = "starting"
        elif not judged:
            result = "idle"  # nothing was judged: not a pass
        elif verdict.passed:
            # Less load than the shape asked for: not a pass (loadsvc.shortfall).
            result = "generator_bound" if starts.short else "passed"
        elif verdict.explained_by(Timing(lag_p99, limit, reads), clocks):
            result = "generator_bound"
        else:
            result = "failed"
        if result == "starting":  # too little seen to say "no data" yet
            judged = [lj for lj in judged if lj.judgement.state != "no_data"]
        return LiveVerdict(
            self.scenario, self.window_s, covered, result, tuple(judged), now, lag_p99, limit,
            reads, starts,
        )  # fmt: skip


def _shift(window: SlidingCounts, shared: int, quantile: float) -> float:
    """:func:`loadsvc.latency.rank_shift` over a live window's histogram."""
    n = window.samples
    top = window.quantile(quantile)
    low = quantile - shared / n if n else 0.0
    floor = window.quantile(low) if low > 0 else 0.0
    return 0.0 if top is None or floor is None else max(0.0, top - floor)


def _judgements(
    thresholds: ScenarioThresholds, kind: str, endpoint: str, window: SlidingCounts
) -> Iterable[Judgement]:
    """The latency and error-ratio judgements of one endpoint's window, as a verdict makes them,
    and on a stream its delivery rate and the connections stalled now (when they are on)."""
    je = judged_endpoint(thresholds, kind, endpoint)
    ep_kind, limits = je.kind, je.limits
    name, latency = je.latency_name, je.latency
    n = window.samples
    value = window.quantile(latency.quantile)
    within = value is None or value <= latency.max_s
    yield quantile_judgement(endpoint, ep_kind, name, latency, value, n, within)
    ratio = window.errors / window.events if window.events else None
    ratio_state: JudgementState = (
        "passed" if ratio is None or ratio <= limits["error_ratio"] else "breached"
    )
    yield Judgement(
        endpoint=endpoint,
        kind=ep_kind,
        name="error_ratio",
        limit=limits["error_ratio"],
        value=ratio,
        state=ratio_state,
    )
    floor = limits.get("ws_delivery_rate")
    if floor is not None:
        # Data frames per connection-second: a stream at half its rate has fine latencies.
        rate = window.delivered / window.connection_s if window.connection_s > 0 else None
        rate_state: JudgementState = (
            "no_data" if rate is None else "passed" if rate >= floor else "breached"
        )
        yield Judgement(endpoint, ep_kind, "ws_delivery_rate", floor, rate, rate_state)
    stalls = limits.get("ws_stalled")
    if stalls is not None:
        # Connections stalled now: a silent stream is not hidden by the others' good latencies.
        yield Judgement(
            endpoint=endpoint,
            kind=ep_kind,
            name="ws_stalled",
            limit=stalls,
            value=float(window.stalled),
            state="passed" if window.stalled <= stalls else "breached",
        )
