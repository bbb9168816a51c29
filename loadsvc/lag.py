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

Pure functions, no clock: the verdict, the baseline and the recorder call them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class GeneratorState:
    """The generator now: lag p99 over the last ``span_s`` seconds against the trust limit."""

    lag_p99_s: float | None  # None: no sample yet
    limit_s: float | None  # None: no latency threshold configured (never busy)
    span_s: float = BUSY_SPAN_S

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
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
