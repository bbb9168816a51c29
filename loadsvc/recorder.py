"""The recorder: the one place results go.

Virtual users get small per-endpoint sinks from it (``HttpSink``, ``WsSink``)
and never see Prometheus. Each sink resolves its labelled metric children once,
so recording an observation is a few attribute lookups, and feeds the same
result to the Prometheus metrics and to the run's :class:`EndpointStats`.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field

from loadsvc.config.spec import EndpointRef, ScenarioSpec
from loadsvc.metrics import (
    HTTP_ERROR_OUTCOMES,
    HTTP_OUTCOMES,
    WS_ERROR_OUTCOMES,
    WS_ERROR_REASONS,
    WS_OUTCOMES,
    WS_SEQUENCE_ANOMALIES,
    Metrics,
)
from loadsvc.runstats import EndpointStats, EndpointSummary, LatencySamples
from loadsvc.verdict import Verdict

Clock = Callable[[], float]


class FailureTally:
    """Failures counted by (scenario, endpoint, reason), drained by a periodic logger.

    A backend that is down must not write a log line per failed request.
    """

    def __init__(self) -> None:
        self._counts: Tally[tuple[str, str, str]] = Tally()

    def add(self, scenario: str, endpoint: str, reason: str) -> None:
        """Count one failure."""
        self._counts[(scenario, endpoint, reason)] += 1

    def drain(self) -> dict[tuple[str, str, str], int]:
        """The counts since the last drain."""
        out = dict(self._counts)
        self._counts.clear()
        return out


class HttpSink:
    """Where a REST user reports each request of one endpoint."""

    __slots__ = ("_counters", "_failures", "_hist", "_key", "_stats")

    def __init__(
        self, metrics: Metrics, scenario: str, ref: EndpointRef, stats: EndpointStats,
        failures: FailureTally,
    ) -> None:  # fmt: skip
        self._hist = metrics.http_request_duration.labels(scenario, ref.endpoint, ref.method)
        self._counters = {
            o: metrics.http_requests.labels(scenario, ref.endpoint, ref.method, o)
            for o in HTTP_OUTCOMES
        }
        self._stats = stats
        self._failures = failures
        self._key = (scenario, ref.endpoint)

    def request(self, latency: float | None, outcome: str) -> None:
        """One request ended with ``outcome``; ``latency`` is None when no response came."""
        self._counters[outcome].inc()
        stats = self._stats
        is_error = outcome != "ok"
        stats.add_outcome(outcome, is_error)
        if latency is not None:
            self._hist.observe(latency)
            stats.latency.add(latency)
        if is_error:
            self._failures.add(self._key[0], self._key[1], outcome)

    def note(self, reason: str, detail: str) -> None:
        """Keep what a person needs to act on a failure (bounded; never a label or a metric)."""
        self._stats.note(reason, detail)


class WsSink:
    """Where a WS user reports frames, connects and failures of one endpoint."""

    __slots__ = (
        "_anomalies", "_clock", "_clock_offset", "_conn_errors", "_connect", "_connections",
        "_failures", "_interval", "_key", "_latency", "_messages", "_missed", "_reconnect",
        "_stats",
    )  # fmt: skip

    def __init__(
        self, metrics: Metrics, scenario: str, ref: EndpointRef, stats: EndpointStats,
        failures: FailureTally, clock: Clock,
    ) -> None:  # fmt: skip
        labels = (scenario, ref.endpoint)
        self._latency = metrics.ws_message_latency.labels(*labels)
        self._interval = metrics.ws_message_interval.labels(*labels)
        self._messages = {o: metrics.ws_messages.labels(*labels, o) for o in WS_OUTCOMES}
        self._missed = metrics.ws_messages_missed.labels(*labels)
        self._connect = metrics.ws_connect_duration.labels(*labels)
        self._reconnect = metrics.ws_reconnect_duration.labels(*labels)
        self._connections = metrics.ws_connections.labels(*labels)
        self._conn_errors = {
            r: metrics.ws_connection_errors.labels(*labels, r) for r in WS_ERROR_REASONS
        }
        self._anomalies = {
            k: metrics.ws_sequence_anomalies.labels(*labels, k) for k in WS_SEQUENCE_ANOMALIES
        }
        self._clock_offset = metrics.ws_clock_offset.labels(*labels)
        self._stats = stats
        self._failures = failures
        self._clock = clock
        self._key = labels

    def frame(
        self,
        outcome: str,
        latency: float | None,
        interval: float | None,
        missed: int,
        offset: float | None = None,
    ) -> None:
        """One data frame received: its outcome, delivery latency, gap since the previous,
        missed sequence numbers, and arrival minus publish stamp (``offset``, when stamped)."""
        self._messages[outcome].inc()
        stats = self._stats
        is_error = outcome == "invalid" or outcome == "malformed"
        stats.add_outcome(outcome, is_error)
        if latency is not None:
            self._latency.observe(latency)
            stats.latency.add(latency)
        if interval is not None:
            self._interval.observe(interval)
        if offset is not None:
            low = stats.clock_offset_min
            # The gauge moves only on a new minimum of the window: rare after its first frames.
            if low is None or offset < low:
                stats.clock_offset_min = offset
                self._clock_offset.set(offset)
        if missed > 0:
            self._missed.inc(missed)
            stats.missed += missed
        if is_error:
            self._failures.add(self._key[0], self._key[1], outcome)

    def missed(self, n: int) -> None:
        """Sequence numbers found missing when a connection ended."""
        self._missed.inc(n)
        self._stats.missed += n

    def status(self) -> None:
        """A status frame: counted on its own (not in ``count``), neither validated nor timed."""
        self._messages["status"].inc()
        stats = self._stats
        stats.status_messages += 1
        stats.outcomes["status"] = stats.outcomes.get("status", 0) + 1

    def connected(self, connect_s: float) -> None:
        """A connection opened after ``connect_s``."""
        self._connect.observe(connect_s)
        self._connections.inc()
        self._stats.connection_opened(self._clock())

    def reconnected(self, reconnect_s: float) -> None:
        """The time from losing or closing a connection to the next one open."""
        self._reconnect.observe(reconnect_s)
        self._stats.reconnect.add(reconnect_s)

    def disconnected(self) -> None:
        """An open connection closed (for any reason)."""
        self._connections.dec()
        self._stats.connection_closed(self._clock())

    def failed(self, reason: str) -> None:
        """A connection attempt failed, or an open connection was lost."""
        self._conn_errors[reason].inc()
        self._stats.connection_failed()
        self._failures.add(self._key[0], self._key[1], reason)

    def note(self, reason: str, detail: str) -> None:
        """Keep what a person needs to act on a failure (bounded; never a label or a metric)."""
        self._stats.note(reason, detail)

    def sequence_anomaly(self, kind: str, n: int = 1) -> None:
        """Frames whose sequence number was not the next one: duplicate, reordered or reset."""
        self._anomalies[kind].inc(n)
        self._stats.anomaly(kind, n)


@dataclass
class ScenarioStats:
    """The per-endpoint stats of one scenario's current run or verdict window."""

    spec: ScenarioSpec
    endpoints: dict[tuple[str, str, str], EndpointStats] = field(default_factory=dict)
    started_wall: float = 0.0

    def roll(self, now: float) -> list[tuple[EndpointSummary, LatencySamples]]:
        """Close the window of every endpoint."""
        return [s.roll(now) for s in self.endpoints.values()]

    def snapshot(self, now: float) -> list[EndpointSummary]:
        """Every endpoint's window so far (exact; not for every second)."""
        return [s.summary(now) for s in self.endpoints.values()]


class Recorder:
    """Feeds results to the metrics and to the per-run stats; publishes verdicts."""

    def __init__(self, metrics: Metrics, clock: Clock = time.monotonic) -> None:
        self.metrics = metrics
        self.clock = clock
        self.failures = FailureTally()
        self.current: dict[str, ScenarioStats] = {}

    def declare(self, spec: ScenarioSpec) -> None:
        """Create every labelled series of a scenario at zero, so ratios have a denominator."""
        m = self.metrics
        s = spec.name
        for g in (m.scenario_users, m.scenario_target_users, m.scenario_running):
            g.labels(s)
        m.scenario_triggers_skipped.labels(s)
        m.run_records_failed.labels(s)
        for result in ("passed", "failed", "generator_bound", "error"):
            m.scenario_runs.labels(s, result)
        for ref in spec.endpoints():
            if ref.kind == "http":
                m.http_request_duration.labels(s, ref.endpoint, ref.method)
                for o in HTTP_OUTCOMES:
                    m.http_requests.labels(s, ref.endpoint, ref.method, o)
            else:
                for metric in (
                    m.ws_message_latency, m.ws_message_interval, m.ws_messages_missed,
                    m.ws_connect_duration, m.ws_reconnect_duration, m.ws_connections,
                ):  # fmt: skip
                    metric.labels(s, ref.endpoint)
                for o in WS_OUTCOMES:
                    m.ws_messages.labels(s, ref.endpoint, o)
                for r in WS_ERROR_REASONS:
                    m.ws_connection_errors.labels(s, ref.endpoint, r)
                for k in WS_SEQUENCE_ANOMALIES:
                    m.ws_sequence_anomalies.labels(s, ref.endpoint, k)
                m.ws_clock_offset.labels(s, ref.endpoint)
            limits = spec.thresholds.for_endpoint(ref.endpoint).limits_for(ref.kind)
            for name, limit in limits.items():
                m.threshold_breached.labels(s, ref.endpoint, name)
                m.threshold_limit.labels(s, ref.endpoint, name).set(limit)

    def begin(self, spec: ScenarioSpec) -> ScenarioStats:
        """Start the stats of a run of ``spec`` (replacing any previous one)."""
        self.declare(spec)
        now = self.clock()
        stats = ScenarioStats(spec, started_wall=time.time())
        for ref in spec.endpoints():
            stats.endpoints[(ref.kind, ref.endpoint, ref.method)] = EndpointStats(
                ref.endpoint, ref.kind, ref.method, now
            )
        self.current[spec.name] = stats
        return stats

    def http_sink(self, stats: ScenarioStats, ref: EndpointRef) -> HttpSink:
        """The sink for one REST endpoint of a run."""
        ep = stats.endpoints[(ref.kind, ref.endpoint, ref.method)]
        return HttpSink(self.metrics, stats.spec.name, ref, ep, self.failures)

    def ws_sink(self, stats: ScenarioStats, ref: EndpointRef) -> WsSink:
        """The sink for one WS endpoint of a run."""
        ep = stats.endpoints[(ref.kind, ref.endpoint, ref.method)]
        return WsSink(self.metrics, stats.spec.name, ref, ep, self.failures, self.clock)

    def publish_verdict(self, scenario: str, verdict: Verdict, result: str) -> None:
        """Export a finished run's (or window's) verdict as metrics."""
        m = self.metrics
        for j in verdict.judgements:
            m.threshold_breached.labels(scenario, j.endpoint, j.name).set(0 if j.passed else 1)
            m.threshold_limit.labels(scenario, j.endpoint, j.name).set(j.limit)
            if j.value is not None:
                m.threshold_value.labels(scenario, j.endpoint, j.name).set(j.value)
        m.scenario_runs.labels(scenario, result).inc()
        m.scenario_last_run_timestamp.labels(scenario).set(time.time())
        m.scenario_last_run_passed.labels(scenario).set(1 if verdict.passed else 0)


__all__ = [
    "HTTP_ERROR_OUTCOMES",
    "WS_ERROR_OUTCOMES",
    "FailureTally",
    "HttpSink",
    "Recorder",
    "ScenarioStats",
    "WsSink",
]
