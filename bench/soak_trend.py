"""Plateau or slow leak: the soak's judgements on memory over restarts, as pure functions.

Two readings of the same points — one per restart cycle, the RSS or live heap just before
the next restart (the same moment of every cycle, so the burst and storm schedules are
at the same phase when the cycle gap divides their periods):

- **N against 2N** (:func:`n_to_2n`): a process that has plateaued holds the same memory
  after restart 2N as after restart N; a leak of any rate per restart shows as the same
  rise again. Within ``WITHIN`` for N >= 20 is the proof the issue asks for. Each side is
  a window of readings ending there (``SPAN``, or whole periods of the load:
  ``bench/soak_judge.py``) made one value: their median, or their ceiling.
- **The fitted trend** (:func:`fit_trend`): least squares over time, with its 95 %
  confidence interval, in units per day. A short run gives a wide interval; that width is
  the honest statement of what the run can tell, and it narrows as the run lengthens.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WITHIN = 0.02  # after restart 2N within 2 % of after restart N
SPAN = 5  # readings (restarts) whose median stands for "after restart k"
DAY_S = 86_400.0
# Student's t, two-sided 95 %, by degrees of freedom (1..30); beyond, the normal's 1.96.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    return _T95[df - 1] if df <= len(_T95) else 1.96


@dataclass(frozen=True)
class Trend:
    """A least-squares line through (seconds, value) points."""

    per_day: float  # the slope, in the value's unit per day
    ci_per_day: float  # half-width of its 95 % confidence interval
    mean: float
    points: int

    def relative(self) -> tuple[float, float]:
        """(slope, half-width) as shares of the mean per day (0.01 = 1 % a day)."""
        return self.per_day / self.mean, self.ci_per_day / self.mean

    def verdict(self) -> str:
        """``no trend`` if the interval holds 0, ``growing``/``shrinking`` if it excludes it."""
        if abs(self.per_day) <= self.ci_per_day:
            return "no trend"
        return "growing" if self.per_day > 0 else "shrinking"


def fit_trend(points: Sequence[tuple[float, float]]) -> Trend | None:
    """The trend of ``points`` (time in seconds, value), None with fewer than 3 or no spread."""
    n = len(points)
    if n < 3:
        return None
    ts = [t for t, _ in points]
    vs = [v for _, v in points]
    t_mean, v_mean = sum(ts) / n, sum(vs) / n
    sxx = sum((t - t_mean) ** 2 for t in ts)
    if sxx == 0 or v_mean == 0:
        return None
    slope = sum((t - t_mean) * (v - v_mean) for t, v in points) / sxx
    residual = sum((v - v_mean - slope * (t - t_mean)) ** 2 for t, v in points)
    se = math.sqrt(residual / (n - 2) / sxx)
    return Trend(slope * DAY_S, t95(n - 2) * se * DAY_S, v_mean, n)


def n_to_2n(
    after_restart: Sequence[float | None],
    span: int = SPAN,
    combine: Callable[[Sequence[float | None]], float | None] | None = None,
) -> tuple[int, float, float] | None:
    """(N, value after restart N, after restart 2N) for the largest N the run has.

    ``after_restart[k - 1]`` is the value after restart ``k``. Each value is ``combine`` (by
    default the median of the known ones) of the ``span`` readings ending at that restart: one
    reading alone may catch frames in flight or a verdict window's samples not yet rolled
    over. None without two restarts or without a value for either span (a verdict over no
    data is no verdict).
    """
    n = len(after_restart) // 2
    if n < 1:
        return None
    width = min(span, n)
    pick = combine or _median
    first = pick(after_restart[n - width : n])
    second = pick(after_restart[2 * n - width : 2 * n])
    if first is None or second is None or first <= 0:
        return None
    return n, first, second


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def within(first: float, second: float, share: float = WITHIN) -> bool:
    """``second`` no more than ``share`` away from ``first``, either way."""
    return abs(second / first - 1) <= share


def over(values: Sequence[float | None], limit: float) -> tuple[int, int]:
    """(how many of the known values exceed ``limit``, how many are known)."""
    known = [v for v in values if v is not None]
    return sum(v > limit for v in known), len(known)
