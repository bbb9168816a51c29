"""Per-run statistics of one endpoint: what a verdict and a summary are computed from.

An endpoint's latencies, connect and reconnect times go to
:class:`~loadsvc.latency.LatencySamples` (exact, with a live histogram); its counts
(outcomes, errors, connections, stalls, diagnostics) are kept here.

Closing a window must not stall the event loop that times frames, so
``roll`` only swaps the window out: the verdict is exact from a count kept as
samples arrive (how many were at or below the threshold's limit), and the
reported percentiles are computed afterwards, off the loop, by numpy's
partition, which releases the GIL (:func:`with_percentiles`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from loadsvc.config.spec import ScenarioThresholds
from loadsvc.latency import CompactHistogram, LatencySamples
from loadsvc.protocols import JudgedEndpoint, ProtocolName, judged_endpoint, protocol_of

# Distinct diagnostics (reason, detail) kept per endpoint and window; later ones are only counted.
MAX_DIAGNOSTICS = 8
# The percentiles every summary reports (1.0 is the maximum).
SUMMARY_QUANTILES = (0.5, 0.95, 0.99, 1.0)


@dataclass(frozen=True)
class EndpointSummary:
    """What one endpoint measured over a run or verdict window."""

    endpoint: str
    kind: ProtocolName
    method: str
    count: int  # requests (http) or frames received (ws)
    errors: int
    events: int  # the error-ratio denominator
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    max_s: float | None
    duration_s: float
    # ws only (0 for http)
    connects: int = 0
    connection_errors: int = 0
    missed: int = 0
    status_messages: int = 0
    connection_seconds: float = 0.0
    reconnect_p95_s: float | None = None
    outcomes: tuple[tuple[str, int], ...] = ()
    # ws: the smallest arrival minus publish stamp (negative: the server's clock is ahead)
    clock_offset_min_s: float | None = None
    # ws: sequence numbers that were not the next one, by kind (duplicate, reordered, reset,
    # unsequenced: none at all)
    sequence_anomalies: tuple[tuple[str, int], ...] = ()
    # Which clock timed arrivals since the run began: WS connections or REST responses by
    # clock ("kernel": the socket's receive stamps; "loop": read by the event loop).
    arrival_clocks: tuple[tuple[str, int], ...] = ()
    # What went wrong, in words a person can act on: (reason, detail, count), e.g.
    # ("tls", "certificate verify failed: self-signed certificate", 20). Bounded.
    diagnostics: tuple[tuple[str, str, int], ...] = ()
    # ws: silences longer than the stall limit (each counted once; see StallThreshold)
    stalls: int = 0
    # http: waits a 429 imposed before the next request (Retry-After or backoff), and their
    # seconds: the load the backend refused, as the users honoured it
    rate_limit_waits: int = 0
    rate_limit_wait_s: float = 0.0
    # ws: whether frames carry a sequence number (else missed frames cannot be known)
    sequenced: bool = False
    # ws: connect (TCP + handshake) and reconnect times at their thresholds' quantiles, and
    # how many of each the window had
    connect_time_s: float | None = None
    reconnect_time_s: float | None = None
    reconnects: int = 0
    # Compact histograms of the window's latencies and reconnect times (see LatencySamples.histogram):
    # what a regression is tested on against a baseline of past runs.
    latency_histogram: CompactHistogram = (0, ())
    reconnect_histogram: CompactHistogram = (0, ())

    def outcome(self, name: str) -> int:
        """How many requests or frames ended with ``name``."""
        return dict(self.outcomes).get(name, 0)

    @property
    def error_ratio(self) -> float:
        """Errors over events; 0 when nothing happened."""
        return self.errors / self.events if self.events else 0.0

    @property
    def rate(self) -> float:
        """Requests or frames per second over the window."""
        return self.count / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def messages_per_second_per_connection(self) -> float | None:
        """Data frames (not status, not duplicates) per connection-second (ws): about 2 under
        a 500 ms throttle."""
        if not protocol_of(self.kind).connections or self.connection_seconds <= 0:
            return None
        return self.count / self.connection_seconds

    @property
    def missed_ratio(self) -> float | None:
        """Missed frames per expected frame (missed + delivered); None: nothing expected, or
        no sequence numbers to tell (none configured, or no delivered frame carried one)."""
        expected = self.missed + self.count
        if not self.sequenced or expected == 0:
            return None
        anomalies = dict(self.sequence_anomalies)
        unknown = anomalies.get("unsequenced", 0) + anomalies.get("untracked", 0)
        if self.missed == 0 and unknown >= self.count:
            return None
        return self.missed / expected


class EndpointStats:
    """Accumulates one endpoint's results for the current window; ``roll`` closes it."""

    def __init__(
        self,
        endpoint: str,
        kind: ProtocolName,
        method: str,
        now: float,
        judged: JudgedEndpoint | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.kind: ProtocolName = kind
        self.method = method
        # The endpoint's protocol and thresholds (default thresholds unless given).
        self.judged = judged or judged_endpoint(ScenarioThresholds(), kind, endpoint, method)
        # Connects and connection errors are events of the error ratio (the protocol says).
        self._connection_events = self.judged.protocol.connections
        self.latency_limit = math.inf
        # What the windows closed so far counted (count, errors, missed, events, connects):
        # with the open window's, a total that never goes back (the per-second series).
        self.closed_totals = (0, 0, 0, 0, 0)
        self.users = 0  # running users on this endpoint, set by the runner once a second
        self.sequenced = self.judged.sequenced  # ws: frames carry sequence numbers
        # The quantiles the connect thresholds judge (p95 when they are off).
        quantiles = self.judged.quantiles
        self.connect_quantile = q.quantile if (q := quantiles.get("ws_connect_time")) else 0.95
        self.reconnect_quantile = q.quantile if (q := quantiles.get("ws_reconnect_time")) else 0.95
        # Not reset by a window: WS connections keep the clock they opened with.
        self.arrival_clocks: dict[str, int] = {}
        self._reset(now)

    @classmethod
    def of(cls, judged: JudgedEndpoint, now: float) -> EndpointStats:
        """The stats of a judged endpoint, counting samples within its latency limit as they come."""
        stats = cls(judged.endpoint, judged.kind, judged.method, now, judged)
        stats.judge_latency_at(judged.latency.max_s)
        return stats

    @property
    def events(self) -> int:
        """The error-ratio denominator of the open window: requests or frames, and on a
        connection protocol its connects and connection errors."""
        if self._connection_events:
            return self.count + self.connects + self.connection_errors
        return self.count

    def judge_latency_at(self, limit: float) -> None:
        """Count samples at or below ``limit`` (the latency threshold) as they arrive, from now on."""
        self.latency_limit = limit
        if self.latency.count == 0:
            self.latency.limit = limit

    def _reset(self, now: float) -> None:
        self.started = now
        self.latency = LatencySamples(limit=self.latency_limit)
        self.reconnect = LatencySamples()
        self.connect = LatencySamples()
        self.stalls = 0  # stalls of this window: begun in it, or still going from the last
        self.stalled_now = 0  # connections in a stall at the moment
        self.count = 0
        self.errors = 0
        self.outcomes: dict[str, int] = {}
        self.connects = 0
        self.connection_errors = 0
        self.missed = 0
        self.status_messages = 0
        self.rate_limit_waits = 0
        self.rate_limit_wait_s = 0.0
        self.open_connections = 0
        self.clock_offset_min: float | None = None
        self.anomalies: dict[str, int] = {}
        self.diagnostics: dict[tuple[str, str], int] = {}
        self.diagnostics_dropped = 0
        self._conn_seconds = 0.0
        self._conn_changed = now

    # -- recording (hot path: keep it small) --------------------------------

    def add_outcome(self, outcome: str, is_error: bool) -> None:
        """Count one request or frame by outcome."""
        self.count += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if is_error:
            self.errors += 1

    def connection_opened(self, now: float) -> None:
        """A connection opened (ws)."""
        self._integrate(now)
        self.open_connections += 1
        self.connects += 1

    def connection_closed(self, now: float) -> None:
        """A connection closed, for whatever reason (ws)."""
        self._integrate(now)
        self.open_connections = max(0, self.open_connections - 1)

    def connection_failed(self) -> None:
        """A connection attempt failed or an open one dropped unexpectedly (ws)."""
        self.connection_errors += 1
        self.errors += 1

    def note(self, reason: str, detail: str) -> None:
        """Keep a diagnostic (e.g. the certificate problem behind ``tls`` failures), bounded."""
        key = (reason, detail)
        seen = self.diagnostics
        if key in seen:
            seen[key] += 1
        elif len(seen) < MAX_DIAGNOSTICS:
            seen[key] = 1
        else:
            self.diagnostics_dropped += 1

    def arrival_clock(self, clock: str) -> None:
        """Count one connection (ws) or response (http) timed by ``clock``."""
        self.arrival_clocks[clock] = self.arrival_clocks.get(clock, 0) + 1

    def anomaly(self, kind: str, n: int = 1) -> None:
        """Count sequence numbers that were not the next one (ws)."""
        self.anomalies[kind] = self.anomalies.get(kind, 0) + n

    def _integrate(self, now: float) -> None:
        self._conn_seconds += self.open_connections * (now - self._conn_changed)
        self._conn_changed = now

    # -- reading ---------------------------------------------------------------

    def summary(self, now: float, *, percentiles: bool = True) -> EndpointSummary:
        """The window so far, with exact percentiles unless ``percentiles`` is False."""
        self._integrate(now)
        qs = self.latency.quantiles(SUMMARY_QUANTILES) if percentiles else {}
        reconnect = self.reconnect.quantiles((0.95,))[0.95]
        connect_q, reconnect_q = self.connect_quantile, self.reconnect_quantile
        connect_time = self.connect.quantiles((connect_q,))[connect_q]
        reconnect_time = self.reconnect.quantiles((reconnect_q,))[reconnect_q]
        events = self.events
        return EndpointSummary(
            endpoint=self.endpoint,
            kind=self.kind,
            method=self.method,
            count=self.count,
            errors=self.errors,
            events=events,
            p50_s=qs.get(0.5),
            p95_s=qs.get(0.95),
            p99_s=qs.get(0.99),
            max_s=qs.get(1.0),
            duration_s=max(0.0, now - self.started),
            connects=self.connects,
            connection_errors=self.connection_errors,
            missed=self.missed,
            status_messages=self.status_messages,
            connection_seconds=self._conn_seconds,
            reconnect_p95_s=reconnect,
            stalls=self.stalls,
            rate_limit_waits=self.rate_limit_waits,
            rate_limit_wait_s=self.rate_limit_wait_s,
            sequenced=self.sequenced,
            connect_time_s=connect_time,
            reconnect_time_s=reconnect_time,
            reconnects=self.reconnect.count,
            outcomes=tuple(sorted(self.outcomes.items())),
            clock_offset_min_s=self.clock_offset_min,
            sequence_anomalies=tuple(sorted(self.anomalies.items())),
            arrival_clocks=tuple(sorted(self.arrival_clocks.items())),
            diagnostics=tuple((r, d, n) for (r, d), n in self.diagnostics.items()),
            latency_histogram=self.latency.histogram() if percentiles else (0, ()),
            reconnect_histogram=self.reconnect.histogram(),
        )

    def roll(self, now: float) -> tuple[EndpointSummary, LatencySamples]:
        """Close the window: its summary (percentiles not yet computed) and samples.

        Cheap whatever the window's size; the next window starts empty. Complete
        the summary with :func:`with_percentiles`, off the loop for big windows.
        """
        summary = self.summary(now, percentiles=False)
        c = self.closed_totals
        self.closed_totals = (
            c[0] + summary.count,
            c[1] + summary.errors,
            c[2] + summary.missed,
            c[3] + summary.events,
            c[4] + summary.connects,
        )
        samples = self.latency
        still_open, still_stalled = self.open_connections, self.stalled_now
        self._reset(now)
        self.open_connections = still_open
        # A connection still silent is stalled in the next window too: a stream that stays
        # stopped fails every window it is stopped in, not only the one where it stopped.
        self.stalls = self.stalled_now = still_stalled
        return summary, samples


def with_percentiles(summary: EndpointSummary, samples: LatencySamples) -> EndpointSummary:
    """``summary`` with the exact percentiles of its window's ``samples`` (thread-safe)."""
    qs = samples.quantiles(SUMMARY_QUANTILES)
    return replace(
        summary,
        p50_s=qs[0.5],
        p95_s=qs[0.95],
        p99_s=qs[0.99],
        max_s=qs[1.0],
        latency_histogram=samples.histogram(),
    )
