"""The generator's own lag: the one definition of "busy" and of what lag can excuse.

A timer that fires late means every timestamp the generator took meanwhile may
be late by as much, so the event loop's lag is the generator's own contribution
to a measured latency. It is only ever a *bound* on that contribution:

- **busy** — the loop lag p99 over a span is above the trust limit, a share
  (``TRUST_SHARE``) of the tightest latency threshold. Every output that says
  "busy" (the ``loadsvc_generator_busy`` gauge and its alert, a verdict, the
  status page, a summary) asks :func:`is_busy`.
- **explained** — a latency over its limit by no more than the lag p99 could be
  the generator's doing (:func:`lag_explains`). A breach beyond that is the
  backend's, however busy the generator was: it fails. A run is
  ``generator_bound`` only when it was busy *and* the lag explains every
  breach it had (nothing else failed).
- **adjusted** — a latency compared with a baseline has the lag taken off
  first (:func:`lag_adjusted`): a comparison is never skipped for lag, it is
  made on the part of the latency the lag cannot account for.

**Kernel-timed endpoints** (issue 22). Where a WS frame is timed by the kernel's
receive stamp (the endpoint's ``arrival_clock`` is ``kernel``) and its latency
starts on the server's clock (a publish stamp: ``ThresholdDecl.server_start``),
the loop's lag no longer shifts the time: a frame waiting in its socket keeps
its stamp. What a generator that falls behind still does to a stamp is make
frames share a read (each is then timed by the last one's arrival), and, when
it falls further behind, let its receive window close so that the server's
kernel holds frames back. So there (:class:`ReadTiming`, the rule
:func:`rule_of`):

- **busy** is "frames shared a read": the loop reached a socket later than the
  next frame arrived. (A stamp-to-read delay longer than the shortest interval
  between frames is what makes that happen; the sharing itself is counted
  exactly, so it is what is judged, not a guess from a low interval quantile.)
- **explained** is within the *read delay*: the larger of the stamp-to-read
  delay p99 (loop time at the read minus the stamp) and the p99 of how long a
  shared read's data can have waited (its stamp minus the connection's previous
  read's stamp: every byte of a read arrived after that). A breach beyond it is
  the backend's, however high the loop lag.
- **adjusted** takes the read delay off while busy, nothing otherwise.

Everything else (a fallback to the loop's clock, ``mixed``, REST latency that
starts at the loop's intended start, connect times) keeps the loop rule.

Pure functions, no clock: the verdict, the baseline and the recorder call them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from loadsvc.protocols import PROTOCOLS

Rule = Literal["loop", "kernel"]  # which of the two rules judges a threshold of an endpoint

# Loop lag p99 above this share of the tightest latency threshold makes the generator busy.
TRUST_SHARE = 0.1
# The span over which the live gauge takes its lag p99 (a verdict uses its whole window).
BUSY_SPAN_S = 10.0


def trust_limit_of(latency_limits_s: Iterable[float]) -> float:
    """The lag p99 above which latencies may be the generator's: a share of the tightest limit."""
    return min(latency_limits_s) * TRUST_SHARE


def is_busy(lag_p99_s: float | None, limit_s: float) -> bool:
    """The generator is busy: its loop lag p99 is over the trust limit (None: not watched)."""
    return lag_p99_s is not None and lag_p99_s > limit_s


def lag_adjusted(value_s: float, lag_p99_s: float | None) -> float:
    """A latency with the most the generator's lag could have added taken off (never below 0)."""
    return value_s if lag_p99_s is None else max(0.0, value_s - lag_p99_s)


def lag_explains(value_s: float, limit_s: float, lag_p99_s: float | None) -> bool:
    """A latency over ``limit_s`` by no more than the lag p99: the generator may have caused it.

    >>> lag_explains(0.105, 0.100, 0.012)   # 5 ms over, 12 ms of lag
    True
    >>> lag_explains(0.150, 0.100, 0.040)   # 50 ms over, 40 ms of lag: the backend's
    False
    """
    return lag_p99_s is not None and lag_adjusted(value_s, lag_p99_s) <= limit_s


def excess(value_s: float, limit_s: float, lag_p99_s: float | None) -> float:
    """How far past its limit a latency is once the lag is taken off (0 when within)."""
    return max(0.0, lag_adjusted(value_s, lag_p99_s) - limit_s)


# Thresholds whose time starts on the server's clock: ended by a kernel stamp, nothing in
# them is the loop's (read from the protocol table, where each threshold declares it).
_SERVER_START = frozenset(
    d.name for p in PROTOCOLS.values() for d in p.thresholds if d.server_start
)


def arrival_clock(counts: Iterable[tuple[str, int]]) -> str | None:
    """The one clock that timed every arrival, "mixed" if several did, None if none yet."""
    used = [clock for clock, n in counts if n > 0]
    if not used:
        return None
    return used[0] if len(used) == 1 else "mixed"


def rule_of(arrival_clock: str | None, threshold: str) -> Rule:
    """Which rule judges ``threshold`` on an endpoint whose arrivals ``arrival_clock`` timed.

    >>> rule_of("kernel", "ws_delivery_latency"), rule_of("mixed", "ws_delivery_latency")
    ('kernel', 'loop')
    >>> rule_of("kernel", "http_latency")   # starts at the loop's intended start
    'loop'
    """
    return "kernel" if arrival_clock == "kernel" and threshold in _SERVER_START else "loop"


@dataclass(frozen=True)
class ReadTiming:
    """What the generator did to kernel stamps over a span (a verdict window, the last 10 s).

    ``read_delay_p99_s``: loop time at a stamped read minus its stamp, p99 over the reads;
    ``shared_frames``: data frames timed by a later frame's stamp (they shared its read);
    ``shared_wait_p99_s``: p99 over those frames of the longest they can have waited;
    ``shifts``: per endpoint and quantile, the most those frames can have moved it
    (:func:`loadsvc.latency.rank_shift`), where the latencies were at hand.

    A frame that shared a read was timed too late by at most its wait, but only *that*
    frame: two frames of 40,000 sharing a read cannot move a p99 by their wait, and a
    backend that sends its frames in pairs (timed together because they came together)
    does not move any quantile of a flat distribution. So an endpoint's excuse from shared
    reads is the smaller of their wait and what they can do to its quantiles.
    """

    read_delay_p99_s: float | None = None  # None: no stamped read in the span
    shared_frames: int = 0
    shared_wait_p99_s: float | None = None
    shifts: tuple[tuple[str, float, float], ...] = ()  # (endpoint, quantile, shift)

    @property
    def busy(self) -> bool:
        """The kernel rule's busy: frames shared a read (the generator fell behind them)."""
        return self.shared_frames > 0

    @property
    def delay_s(self) -> float:
        """The most the generator may have added to a kernel-stamped time (p99), any endpoint."""
        return self.delay_for(None)

    def delay_for(self, endpoint: str | None, quantile: float | None = None) -> float:
        """The most the generator may have added to a kernel-stamped ``quantile`` of
        ``endpoint`` (any of its quantiles if None): the read delay p99, and the shared
        frames' wait p99 as far as they can have moved it (all of it where ``shifts`` does
        not say)."""
        wait = self.shared_wait_p99_s or 0.0
        moved = [
            shift
            for name, q, shift in self.shifts
            if name == endpoint and (quantile is None or q == quantile)
        ]
        if moved:
            wait = min(wait, max(moved))
        return max(self.read_delay_p99_s or 0.0, wait)


NO_READS = ReadTiming()  # no stamped read seen (the default of every holder)


@dataclass(frozen=True)
class Timing:
    """The generator's own timing over a span: loop lag for the loop rule, reads for the kernel's."""

    lag_p99_s: float | None  # None: the loop was not watched
    limit_s: float | None  # the trust limit (None: no latency threshold, never busy)
    reads: ReadTiming = ReadTiming()

    def busy(self, rule: Rule = "loop") -> bool:
        """The one definition of busy, under ``rule``."""
        if rule == "kernel":
            return self.reads.busy
        return self.limit_s is not None and is_busy(self.lag_p99_s, self.limit_s)

    def excusable_s(
        self, rule: Rule = "loop", endpoint: str | None = None, quantile: float | None = None
    ) -> float | None:
        """What the generator may have added to a time (``quantile`` of ``endpoint``, when
        known) judged under ``rule`` (None: unknown); under the kernel rule nothing unless
        busy (:meth:`ReadTiming.delay_for`)."""
        if rule == "kernel":
            return self.reads.delay_for(endpoint, quantile) if self.reads.busy else 0.0
        return self.lag_p99_s

    def explains(
        self,
        value_s: float,
        limit_s: float,
        rule: Rule = "loop",
        endpoint: str | None = None,
        quantile: float | None = None,
    ) -> bool:
        """A breach the generator may have caused: busy under ``rule``, and within what it adds."""
        excusable = self.excusable_s(rule, endpoint, quantile)
        return self.busy(rule) and lag_explains(value_s, limit_s, excusable)

    def adjusted(
        self,
        value_s: float,
        rule: Rule = "loop",
        endpoint: str | None = None,
        quantile: float | None = None,
    ) -> float:
        """A latency with what the generator may have added under ``rule`` taken off."""
        return lag_adjusted(value_s, self.excusable_s(rule, endpoint, quantile))


@dataclass(frozen=True)
class GeneratorState:
    """The generator now: lag p99 over the last ``span_s`` seconds against the trust limit."""

    lag_p99_s: float | None  # None: no sample yet
    limit_s: float | None  # None: no latency threshold configured (never busy)
    span_s: float = BUSY_SPAN_S
    reads: ReadTiming = ReadTiming()  # kernel-stamped reads over the same span

    @property
    def busy(self) -> bool:
        """The one definition (:func:`is_busy`), over the recent span."""
        return self.limit_s is not None and is_busy(self.lag_p99_s, self.limit_s)

    def doc(self) -> dict[str, Any]:
        """The ``generator`` part of ``/api/status`` (milliseconds, like the summary)."""
        return {
            "busy": self.busy,
            "loop_lag_p99_ms": _ms(self.lag_p99_s),
            "loop_lag_limit_ms": _ms(self.limit_s),
            "span_s": self.span_s,
            # The kernel rule's figures (loadsvc.lag): busy there means frames shared a read.
            "read_delay_p99_ms": _ms(self.reads.read_delay_p99_s),
            "frames_sharing_a_read": self.reads.shared_frames,
            "reads_busy": self.reads.busy,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
