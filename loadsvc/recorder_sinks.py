"""The recorder's sinks: what each REST response and WS frame does to the metrics and stats.

Virtual users get one sink per endpoint from the :class:`~loadsvc.recorder.Recorder`
(implementing the ``HttpSink`` and ``WsSink`` protocols of :mod:`loadsvc.users.base`) and
never see Prometheus. Each sink resolves its labelled metric children once, so recording an
observation is a few attribute lookups, and feeds the same result to the Prometheus metrics
(per-frame updates batched, :mod:`loadsvc.metricbatch`) and to the run's
:class:`~loadsvc.runstats.EndpointStats`.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable

from loadsvc.config.spec import EndpointRef, StallThreshold
from loadsvc.metricbatch import MetricBatch
from loadsvc.metrics import ARRIVAL_CLOCKS, WS_ERROR_REASONS, WS_SEQUENCE_ANOMALIES, Metrics
from loadsvc.protocols import HTTP, WS
from loadsvc.runstats import EndpointStats

Clock = Callable[[], float]
# What counts as the backend's errors, as the protocol table says (skewed frames are judged
# apart: clock skew).
_HTTP_ERRORS = frozenset(HTTP.error_outcomes)
_WS_ERRORS = frozenset(WS.error_outcomes)


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


class RecorderHttpSink:
    """Where a REST user reports each request of one endpoint (a ``users.base.HttpSink``)."""

    __slots__ = ("_batch", "_clocks", "_counters", "_failures", "_hist", "_key", "_stats",
                 "_wait_s", "_waits")  # fmt: skip

    def __init__(
        self, metrics: Metrics, scenario: str, ref: EndpointRef, stats: EndpointStats,
        failures: FailureTally, batch: MetricBatch,
    ) -> None:  # fmt: skip
        # Per-request updates are counted in ``batch`` and reach Prometheus once per loop turn.
        self._batch = batch
        self._hist = batch.histogram(
            metrics.http_request_duration.labels(scenario, ref.endpoint, ref.method)
        )
        self._counters = {
            o: batch.counter(metrics.http_requests.labels(scenario, ref.endpoint, ref.method, o))
            for o in HTTP.outcomes
        }
        labels = (scenario, ref.endpoint, ref.method)
        self._waits = metrics.http_rate_limit_waits.labels(*labels)
        self._wait_s = metrics.http_rate_limit_wait_seconds.labels(*labels)
        self._stats = stats
        self._failures = failures
        self._key = (scenario, ref.endpoint)
        self._clocks = ArrivalClockInfo(metrics, scenario, ref.endpoint, stats)

    def request(self, latency: float | None, outcome: str) -> None:
        """One request ended with ``outcome``; ``latency`` is None when no response came."""
        self._counters[outcome].inc()
        stats = self._stats
        is_error = outcome in _HTTP_ERRORS
        stats.add_outcome(outcome, is_error)
        if latency is not None:
            self._hist.observe(latency)
            stats.latency.add(latency)
        if is_error:
            self._failures.add(self._key[0], self._key[1], outcome)
        if not self._batch.due:
            self._batch.touched()

    def arrival_clock(self, clock: str) -> None:
        """A response's arrival was timed by ``clock``."""
        self._clocks.seen(clock)

    def note(self, reason: str, detail: str) -> None:
        """Keep what a person needs to act on a failure (bounded; never a label or a metric)."""
        self._stats.note(reason, detail)

    def waited(self, seconds: float) -> None:
        """A 429 made a user leave the endpoint alone for ``seconds``."""
        self._waits.inc()
        self._wait_s.inc(seconds)
        self._stats.rate_limit_waits += 1
        self._stats.rate_limit_wait_s += seconds


class ArrivalClockInfo:
    """Counts an endpoint's arrivals by clock; ``loadsvc_arrival_clock_info`` is 1 for each seen."""

    __slots__ = ("_info", "_seen", "_stats")

    def __init__(
        self, metrics: Metrics, scenario: str, endpoint: str, stats: EndpointStats
    ) -> None:
        self._info = {
            c: metrics.arrival_clock_info.labels(scenario, endpoint, c) for c in ARRIVAL_CLOCKS
        }
        self._seen: set[str] = set()
        self._stats = stats

    def seen(self, clock: str) -> None:
        """One connection (ws) or response (http) timed by ``clock``."""
        self._stats.arrival_clock(clock)
        if clock not in self._seen:
            self._seen.add(clock)
            self._info[clock].set(1)


class RecorderWsSink:
    """Where a WS user reports frames, connects and failures of one endpoint (a ``users.base.WsSink``)."""

    __slots__ = (
        "_anomalies", "_batch", "_clock", "_clock_offset", "_clocks", "_conn_errors", "_connect",
        "_connections", "_failures", "_interval", "_key", "_latency", "_messages", "_missed",
        "_reconnect", "_stalls", "_stats", "stall",
    )  # fmt: skip

    def __init__(
        self, metrics: Metrics, scenario: str, ref: EndpointRef, stats: EndpointStats,
        failures: FailureTally, clock: Clock, stall: StallThreshold, batch: MetricBatch,
    ) -> None:  # fmt: skip
        labels = (scenario, ref.endpoint)
        self.stall = stall  # when a silent connection is stalled (the users watch for it)
        self._stalls = metrics.ws_stalls.labels(*labels)
        # The per-frame updates are counted in ``batch`` and reach Prometheus once per loop
        # turn (see loadsvc.metricbatch); the rest are rare and go straight to their children.
        self._batch = batch
        self._latency = batch.histogram(metrics.ws_message_latency.labels(*labels))
        self._interval = batch.histogram(metrics.ws_message_interval.labels(*labels))
        self._messages = {
            o: batch.counter(metrics.ws_messages.labels(*labels, o)) for o in WS.outcomes
        }
        self._missed = batch.counter(metrics.ws_messages_missed.labels(*labels))
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
        self._clocks = ArrivalClockInfo(metrics, scenario, ref.endpoint, stats)

    def frame(
        self,
        outcome: str,
        latency: float | None,
        interval: float | None,
        missed: int,
        offset: float | None = None,
    ) -> None:
        """One data frame received, as :meth:`loadsvc.users.base.WsSink.frame` describes."""
        self._messages[outcome].inc()
        stats = self._stats
        is_error = outcome in _WS_ERRORS
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
        if not self._batch.due:
            self._batch.touched()

    def missed(self, n: int) -> None:
        """Sequence numbers found missing when a connection ended."""
        self._missed.inc(n)
        self._stats.missed += n
        self._batch.touched()

    def status(self) -> None:
        """A status frame: counted on its own (not in ``count``), neither validated nor timed."""
        self._messages["status"].inc()
        self._batch.touched()
        stats = self._stats
        stats.status_messages += 1
        stats.outcomes["status"] = stats.outcomes.get("status", 0) + 1

    def duplicate(self) -> None:
        """A frame whose sequence number was already delivered: counted apart (not in
        ``count`` nor the delivery rate), neither validated nor timed."""
        self._messages["duplicate"].inc()
        self._batch.touched()
        stats = self._stats
        stats.outcomes["duplicate"] = stats.outcomes.get("duplicate", 0) + 1
        self.sequence_anomaly("duplicate")

    def stalled(self) -> None:
        """An open connection has been silent, or a user without one, for longer than ``stall.after_s``."""
        self._stalls.inc()
        stats = self._stats
        stats.stalls += 1
        stats.stalled_now += 1
        stats.outcomes["stalled"] = stats.outcomes.get("stalled", 0) + 1

    def stall_ended(self) -> None:
        """A stalled connection delivered again, or ended."""
        stats = self._stats
        stats.stalled_now = max(0, stats.stalled_now - 1)

    def connected(self, connect_s: float) -> None:
        """A connection opened after ``connect_s``."""
        self._connect.observe(connect_s)
        self._stats.connect.add(connect_s)
        self._connections.inc()
        self._stats.connection_opened(self._clock())

    def arrival_clock(self, clock: str) -> None:
        """The connection just opened times its frames by ``clock``."""
        self._clocks.seen(clock)

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
        """Frames whose sequence number was not the next one (duplicate, reordered, reset) or
        was missing (unsequenced)."""
        self._anomalies[kind].inc(n)
        self._stats.anomaly(kind, n)


__all__ = ["ArrivalClockInfo", "Clock", "FailureTally", "RecorderHttpSink", "RecorderWsSink"]
