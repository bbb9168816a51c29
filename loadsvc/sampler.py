"""Once a second, what each running scenario's endpoints did since the last look, into series.

The sampler reads what a run already keeps (its :class:`~loadsvc.recorder.ScenarioStats`:
counts, the live latency histograms, open connections) and takes differences;
nothing is added to the per-request or per-frame path. A verdict window that
rolls between two looks resets the counts, so they are read as totals over the
run (the closed windows' plus the open one's) and the old window's latency
histogram is read to its end: a roll neither loses nor doubles anything.

The same looks feed each scenario's live judgement (:mod:`loadsvc.live`): its
thresholds over the last minute, and the generator's own loop lag over it.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from loadsvc.config.spec import ScenarioSpec, ScenarioThresholds
from loadsvc.lag import GeneratorState, ReadTiming, arrival_clock
from loadsvc.latency import LatencySamples
from loadsvc.live import LiveJudge, LiveVerdict, SlidingCounts, live_window_from_env
from loadsvc.protocols import protocol_of
from loadsvc.recorder import ScenarioStats
from loadsvc.runstats import EndpointStats
from loadsvc.timeseries import TIERS, Counts, EndpointSeries, Interval, Tier

# A first look at a run counts from its start, but never over more than this.
MAX_FIRST_SPAN_S = 5.0


def endpoint_key(kind: str, endpoint: str, method: str) -> str:
    """The name an endpoint's series goes by: ``GET /api/x`` (http) or ``/ws/x`` (ws)."""
    return f"{method} {endpoint}" if method and protocol_of(kind).per_method else endpoint


@dataclass
class _Seen:
    """What one endpoint's stats held at the last look."""

    stats: EndpointStats
    latency: LatencySamples
    reconnect: LatencySamples
    latency_counts: Counts
    reconnect_counts: Counts
    totals: tuple[int, int, int, int, int]  # _totals() at the last look


class LagWatch(Protocol):
    """Where the generator's loop lag is read (:class:`loadsvc.loopmon.LoopLagMonitor`)."""

    def open_window(self) -> LatencySamples:
        """Start collecting lag samples."""

    def close_window(self, window: LatencySamples) -> None:
        """Stop collecting into ``window``."""

    @property
    def state(self) -> GeneratorState:
        """The generator over the recent span (its kernel-stamped reads: the kernel rule)."""


def _totals(ep: EndpointStats) -> tuple[int, int, int, int, int]:
    """(requests or frames, errors, missed, error-ratio events, connects) over the whole run."""
    events = ep.events
    c = ep.closed_totals
    return (
        c[0] + ep.count,
        c[1] + ep.errors,
        c[2] + ep.missed,
        c[3] + events,
        c[4] + ep.connects,
    )


def _counts(samples: LatencySamples) -> Counts:
    return np.array(samples.live_counts, dtype=np.int64)


def _since(now: LatencySamples, then: LatencySamples, then_counts: Counts) -> tuple[Counts, Counts]:
    """(this interval's bucket counts, the counts to remember), across a window roll."""
    current = _counts(now)
    if now is then:
        return current - then_counts, current
    # The window rolled: the rest of the old one, then all of the new one.
    return (_counts(then) - then_counts) + current, current


@dataclass
class ScenarioSeries:
    """Every endpoint's series of one scenario, across its runs, plus what it is judged by."""

    name: str
    tiers: tuple[Tier, ...] = TIERS
    endpoints: dict[str, EndpointSeries] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    latency_limits: dict[str, dict[str, float]] = field(default_factory=dict)
    thresholds: ScenarioThresholds = field(default_factory=ScenarioThresholds)
    live: LiveJudge | None = None

    def describe(self, spec: ScenarioSpec) -> None:
        """Take the endpoints' kinds and thresholds (quantile, max) from the scenario's config."""
        self.thresholds = spec.thresholds
        for je in spec.judged_endpoints:
            key = endpoint_key(je.kind, je.endpoint, je.method)
            self.kinds[key] = je.kind
            self.latency_limits[key] = {
                "quantile": je.latency.quantile,
                "max_s": je.latency.max_s,
                "error_ratio": je.limits["error_ratio"],
            }

    def to_doc(self, since: float | None = None) -> dict[str, Any]:
        """The JSON document the pages draw: every endpoint's columns and thresholds."""
        return {
            "scenario": self.name,
            "endpoints": [
                {
                    "endpoint": key,
                    "kind": self.kinds.get(key, "http"),
                    "thresholds": self.latency_limits.get(key, {}),
                    "points": series.to_doc(since),
                }
                for key, series in self.endpoints.items()
            ],
        }


class SeriesSampler:
    """Looks at running scenarios once a second and keeps their series (bounded)."""

    def __init__(
        self,
        tiers: tuple[Tier, ...] = TIERS,
        clock: Callable[[], float] = time.time,
        live_window_s: float | None = None,
    ) -> None:
        self.tiers = tiers
        self.clock = clock
        self.live_window_s = live_window_from_env() if live_window_s is None else live_window_s
        self.series: dict[str, ScenarioSeries] = {}
        self._seen: dict[tuple[str, str], _Seen] = {}
        # Each scenario's run totals of starts at the last look (loadsvc.shortfall).
        # (weakly: an ended run's stats are not kept for it).
        self._seen_starts: dict[str, tuple[weakref.ref[ScenarioStats], float, int, float]] = {}
        self._last_look: dict[str, float] = {}
        self.lag = SlidingCounts(self.live_window_s)
        self._lag_watch: LagWatch | None = None
        self._lag_window: LatencySamples | None = None

    def watch_lag(self, watch: LagWatch) -> None:
        """Read the generator's loop lag from ``watch`` at every :meth:`sample_lag`."""
        self._lag_watch = watch
        self._lag_window = watch.open_window()

    def sample_lag(self, now: float | None = None) -> None:
        """Take the loop lag since the last look into the live window (one call per second)."""
        watch, window = self._lag_watch, self._lag_window
        if watch is None or window is None:
            return
        now = self.clock() if now is None else now
        # A fresh window each look: a long-lived one would keep every sample for days.
        self._lag_window = watch.open_window()
        watch.close_window(window)
        self.lag.add(now, 1.0, 0, 0, _counts(window))

    def live(self, name: str, now: float | None = None) -> LiveVerdict | None:
        """The live judgement of scenario ``name`` over the last window (None: never sampled)."""
        series = self.series.get(name)
        if series is None or series.live is None:
            return None
        now = self.clock() if now is None else now
        lag = self.lag if self._lag_watch is not None else None
        reads = self._lag_watch.state.reads if self._lag_watch is not None else ReadTiming()
        return series.live.judge(series.thresholds, now, lag, reads)

    def sample(self, stats: ScenarioStats, users: int, now: float | None = None) -> None:
        """Take one look at a scenario's current run (``users`` running now)."""
        now = self.clock() if now is None else now
        spec = stats.spec
        series = self.series.get(spec.name)
        if series is None:
            series = self.series[spec.name] = ScenarioSeries(spec.name, self.tiers)
        series.describe(spec)
        live = series.live
        if live is None or live.window_s != self.live_window_s:
            live = series.live = LiveJudge(spec.name, self.live_window_s)
        last = self._last_look.get(spec.name)
        self._last_look[spec.name] = now
        if any(
            (seen := self._seen.get((spec.name, endpoint_key(*k)))) is not None
            and seen.stats is not ep
            for k, ep in stats.endpoints.items()
        ):
            live.restart()  # a new run: the last one's minute is not this one's
        for (kind, endpoint, method), ep in stats.endpoints.items():
            key = endpoint_key(kind, endpoint, method)
            seen = self._seen.get((spec.name, key))
            if seen is None or seen.stats is not ep:  # a new run: count from its start
                span = min(now - stats.started_wall, MAX_FIRST_SPAN_S)
                if last is not None:
                    span = min(span, now - last)
                seen = self._fresh(ep)
            else:
                span = now - (last if last is not None else now)
            interval = self._interval(ep, seen, now, max(span, 1e-3), users)
            self._seen[(spec.name, key)] = seen
            target = series.endpoints.get(key)
            if target is None:
                target = series.endpoints[key] = EndpointSeries(self.tiers)
            target.add(interval)
            live.add(
                kind,
                endpoint,
                now,
                interval.span_s,
                interval.events,
                interval.errors,
                interval.latency,
                manned=ep.users > 0,
                stalled=ep.stalled_now,
                delivered=interval.requests if ep.judged.protocol.connections else 0,
                connections=interval.connections,
                clock=arrival_clock(ep.arrival_clocks.items()),
            )
        self._look_at_starts(live, stats, now)

    def _look_at_starts(self, live: LiveJudge, stats: ScenarioStats, now: float) -> None:
        """The starts since the last look into the live window: what the shape asked for and
        what late starts missed (a new run counts from its start)."""
        seen = self._seen_starts.get(stats.spec.name)
        if seen is None or seen[0]() is not stats:
            seen = (weakref.ref(stats), 0.0, 0, 0.0)
        _, asked, late, missed = seen
        run = stats.starts
        live.add_starts(
            now, run.asked_user_s - asked, run.late_users - late, run.late_user_s - missed
        )
        self._seen_starts[stats.spec.name] = (
            weakref.ref(stats),
            run.asked_user_s,
            run.late_users,
            run.late_user_s,
        )

    def keep_only(self, names: Iterable[str]) -> None:
        """Forget the series of scenarios no longer configured."""
        keep = set(names)
        for name in [n for n in self.series if n not in keep]:
            del self.series[name]
            self._last_look.pop(name, None)
        for k in [k for k in self._seen if k[0] not in keep]:
            del self._seen[k]
        for name in [n for n in self._seen_starts if n not in keep]:
            del self._seen_starts[name]

    @staticmethod
    def _fresh(ep: EndpointStats) -> _Seen:
        zeros = np.zeros(len(ep.latency.live_counts), np.int64)
        return _Seen(ep, ep.latency, ep.reconnect, zeros, zeros.copy(), (0, 0, 0, 0, 0))

    @staticmethod
    def _interval(ep: EndpointStats, seen: _Seen, now: float, span: float, users: int) -> Interval:
        latency, seen.latency_counts = _since(ep.latency, seen.latency, seen.latency_counts)
        reconnect, seen.reconnect_counts = _since(
            ep.reconnect, seen.reconnect, seen.reconnect_counts
        )
        seen.latency, seen.reconnect = ep.latency, ep.reconnect
        # Totals over the run (closed windows plus the open one): a window roll
        # between two looks neither loses nor doubles a count.
        totals = _totals(ep)
        delta = [max(0, now_ - then) for now_, then in zip(totals, seen.totals, strict=True)]
        seen.totals = totals
        return Interval(
            ended_at=now,
            span_s=span,
            users=users,
            requests=delta[0],
            errors=delta[1],
            missed=delta[2],
            connections=ep.open_connections,
            events=delta[3],
            connects=delta[4],
            latency=latency,
            reconnect=reconnect if ep.judged.protocol.connections else None,
        )
