"""The soak's memory judgement: readings after each restart, N against 2N at matched phases.

Every restart cycle ends (just before the next restart, or at the run's end) at the same
moment of its cycle, and the burst and the storm repeat every ``phase_cycles`` cycles
(``bench/soak_config.py``), so cycle k and k + ``phase_cycles`` end at the same phase of the
load. "After restart N" is a *window* of whole periods ending at restart N
(:func:`phase_window`): every phase in it as often as in the window ending at 2N, so a reading
that swings with the load (600 against 500 connections open) swings alike on both sides.

Two kinds of reading, each with its own way of making a window one value (data, in
``READINGS``): a reading at the cycle's end (the live heap; RSS, shown) is the window's
median; a **ceiling** is the highest sample within the window's cycles (RSS, judged). RSS is
a saw-tooth at the seed's full size: glibc's ``malloc_trim`` after each collector sweep gives
23-38 MB back, and RSS climbs again towards glibc's high-water as the load touches those
pages. A single reading depends on how long ago the last trim was; the highest sample over
whole periods of the load is the top of the saw-tooth, which a leak raises with the rest and
the trim's timing does not, as long as the load takes back within the window what a trim gave
(the next burst does). The process's RSS high-water (``VmHWM``), which no trim lowers, is
judged beside it (it must not rise past 2 % either); the trims in each window, what they gave
back and the heap's peak are shown.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.soak_trend import SPAN, WITHIN, fit_trend, n_to_2n

if TYPE_CHECKING:
    from bench.soak_report import SoakResult

# A cycle end's reading that is that cycle's only if a counter moved within the cycle: the
# heap after the last full collection, taken by loadsvc's gc hook, belongs to the cycle in
# which that collection ran (the same value again is an earlier cycle's).
# (The heap at the last sweep is read as it stands: the sweep by then, however long ago; but
# not before the first sweep, when it is the heap of a process that had no load yet.)
FRESH_WHEN = {
    "heap_gc_blocks": "full_gcs",
    "sweep_garbage": "sweeps",
    "sweep_freed_blocks": "sweeps",
    "full_gc_freed_blocks": "sweeps",
}
LATE_S = 2.0  # a reading later than this is at another moment of the accelerated cycle (8 s)

Values = list[float | None]


def after_a_sweep(result: SoakResult, attr: str) -> Values:
    """``attr`` after each restart as :func:`after_restarts` reads it, None until the first
    sweep: a reading left by the process's start (no load) against one left by a sweep under
    load is no growth (a lone sweep read +25 % "growing" in an accelerated soak)."""
    swept = [bool(end.get("sweeps")) for end in result.cycle_ends[1:]]
    return [v if s else None for v, s in zip(after_restarts(result, attr), swept, strict=True)]


def after_restarts(result: SoakResult, attr: str) -> Values:
    """``attr`` after each restart: the k-th value is the reading before restart k+1 (or end);
    None where the reading is not that cycle's own (see ``FRESH_WHEN``)."""
    ends = result.cycle_ends
    counter = FRESH_WHEN.get(attr)
    if counter is None:
        return [end.get(attr) for end in ends[1:]]
    return [
        end.get(attr)
        if end.get(counter) is not None and end.get(counter) != prev.get(counter)
        else None
        for prev, end in itertools.pairwise(ends)
    ]


def cycle_peaks(result: SoakResult, attr: str) -> Values:
    """The highest sample of ``attr`` within each cycle (the k-th: from the end of cycle k-1
    to the end of cycle k, after restart k); None for a cycle without a sample."""
    times = [end.get("t_s") for end in result.cycle_ends]
    out: Values = []
    for start, stop in itertools.pairwise(times):
        seen = [
            v
            for s in result.samples
            if start is not None
            and stop is not None
            and start < s.t_s <= stop
            and (v := getattr(s, attr)) is not None
        ]
        out.append(max(seen) if seen else None)
    return out


def median(values: Sequence[float | None]) -> float | None:
    """The median of the known values (None if none is known)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def ceiling(values: Sequence[float | None]) -> float | None:
    """The highest of ``values``; None if any is unknown (a cycle with no sample may be the
    one that held the window's top, so the window has no ceiling)."""
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def phase_window(result: SoakResult) -> tuple[int | None, str]:
    """Cycles per side of N against 2N (whole periods of the load: every phase alike on both
    sides), and the words for the table; None, with the reason, where the run cannot have it."""
    n = len(result.restarts) // 2
    period = result.phase_cycles
    if n < 1:
        return None, "fewer than 2 restarts"
    if period < 1:
        return None, "the load's schedule was not in step with the restarts"
    if period > n:
        return None, f"a period of the load ({period} cycles) is longer than restart N = {n}"
    width = period * min(n // period, math.ceil(SPAN / period))
    return width, f"{width} cycles a side, {width // period} period(s) of {period} of the load"


@dataclass(frozen=True)
class Reading:
    """One memory reading of every cycle: what it is, and how a window makes it one value."""

    key: str
    what: str
    unit: str
    scale: float  # to the unit
    values: Callable[[SoakResult], Values]  # one per cycle, the k-th after restart k
    combine: Callable[[Sequence[float | None]], float | None]  # a window into one value
    fitted: bool = True  # a trend per day is fitted (not to a high-water mark: no rate)


# The live heap is read at the cycle's end, the same phase of the load every cycle, with at
# most a cycle's garbage in it (the rows after); the reading after a full collection has no
# garbage but the load in flight whenever the collection ran. RSS at the cycle's end is the
# saw-tooth's phase as much as the process's (shown); its ceiling is judged.
READINGS = (
    Reading("rss_ceiling", "RSS ceiling (highest sample in the cycles)", "MB", 1.0,
            lambda r: cycle_peaks(r, "rss_mb"), ceiling),
    Reading("rss_mb", "RSS at the cycle's end", "MB", 1.0,
            lambda r: after_restarts(r, "rss_mb"), median),
    Reading("heap_blocks", "live heap at the cycle's end", "k blocks", 1e-3,
            lambda r: after_restarts(r, "heap_blocks"), median),
    Reading("heap_gc_blocks", "live heap after a full collection in the cycle", "k blocks",
            1e-3, lambda r: after_restarts(r, "heap_gc_blocks"), median),
    Reading("heap_sweep_blocks", "live heap at the last sweep by then (no garbage at all)",
            "k blocks", 1e-3, lambda r: after_a_sweep(r, "heap_sweep_blocks"), median),
    Reading("rss_hwm_mb", "RSS high-water of the process (VmHWM, never lowered)", "MB", 1.0,
            lambda r: after_restarts(r, "rss_hwm_mb"), ceiling, fitted=False),
)  # fmt: skip
BY_KEY = {reading.key: reading for reading in READINGS}
JUDGED = {"RSS": "rss_ceiling", "RSS high-water": "rss_hwm_mb", "live heap": "heap_blocks"}


def n_against_2n(result: SoakResult, key: str) -> tuple[int, float, float] | None:
    """(N, after restart N, after restart 2N) of a reading over phase-matched windows; None
    where there is no such window or no reading in one."""
    width, _ = phase_window(result)
    if width is None:
        return None
    reading = BY_KEY[key]
    return n_to_2n(reading.values(result), width, reading.combine)


def past_first_period(result: SoakResult) -> tuple[bool, str]:
    """Whether the window ending at restart N (of N against 2N) starts after the schedule's
    first full period, and the words for the table: before it, RSS still climbs to the load's
    first peak."""
    n = len(result.restarts) // 2
    if n < 1 or len(result.cycle_ends) <= n:
        return False, "fewer than 2 restarts"
    width = phase_window(result)[0] or 1
    at = result.cycle_ends[n].get("t_s") or 0.0
    start = result.cycle_ends[n - width].get("t_s") or 0.0
    period = result.schedule_period_s
    return start >= period, (
        f"restart {n} at {at:,.0f} s, its window from {start:,.0f} s, "
        f"schedule period {period:,.0f} s"
    )


def garbage_per_cycle(result: SoakResult) -> list[float]:
    """Objects the cyclic collector freed in each cycle after the first restart."""
    freed = [end.get("gc_freed") for end in result.cycle_ends]
    return [b - a for a, b in itertools.pairwise(freed) if a is not None and b is not None]


def max_heap_so_far(result: SoakResult) -> Values:
    """The largest live heap sampled up to each cycle's end (the k-th: after restart k).

    pymalloc keeps an arena while any block in it lives and glibc its heap's top while
    anything above is used, so RSS is a high-water mark of the heap's peaks: a rise of RSS
    with a rise of this is the allocators following a new peak of the load; a rise without
    one is memory the Python heap does not see."""
    out: Values = []
    for end in result.cycle_ends[1:]:
        t = end.get("t_s")
        seen = [
            s.heap_blocks
            for s in result.samples
            if s.heap_blocks is not None and (t is None or s.t_s <= t)
        ]
        out.append(max(seen) if seen else None)
    return out


def _window_rise(result: SoakResult, counter: str, n: int, width: int) -> tuple[float, float]:
    """How much a counter read at cycle ends rose over the window ending at N and at 2N."""
    ends = result.cycle_ends

    def rise(k: int) -> float:
        a, b = ends[k - width].get(counter), ends[k].get(counter)
        return 0.0 if a is None or b is None else b - a

    return rise(n), rise(2 * n)


def high_water_rows(result: SoakResult) -> list[tuple[str, str]]:
    """The RSS ceiling against the heap's peak so far, and the trims in each window, N against
    2N; the sweeps' garbage; the trims in all."""
    rows: list[tuple[str, str]] = []
    width, _ = phase_window(result)
    rss = n_against_2n(result, "rss_ceiling")
    peaks = n_to_2n(max_heap_so_far(result), width or 1, ceiling)
    if width is not None and peaks is not None and rss is not None:
        n, p1, p2 = peaks
        _, r1, r2 = rss
        rows.append(
            (
                f"RSS ceiling against the live heap's peak so far, after restart {n} -> {2 * n}",
                f"RSS {r1:,.1f} -> {r2:,.1f} MB ({(r2 / r1 - 1) * 100:+.2f} %) while the peak "
                f"went {p1 / 1e3:,.1f} -> {p2 / 1e3:,.1f} k blocks "
                f"({(p2 / p1 - 1) * 100:+.2f} %): "
                + (
                    "a new peak of the heap, which RSS, a high-water mark, may follow"
                    if p2 > p1
                    else "no new peak: a rise of RSS is memory the Python heap does not see"
                ),
            )
        )
        t1, t2 = _window_rise(result, "trims", n, width)
        b1, b2 = (v / 2**20 for v in _window_rise(result, "trim_released", n, width))
        rows.append(
            (
                f"glibc trims in the windows of restart {n} and {2 * n}",
                f"{t1:,.0f} and {t2:,.0f}, giving back {b1:,.1f} and {b2:,.1f} MB (a reading "
                "just after one is that much lower; the window's ceiling only if the load "
                "did not take those pages again within the window)",
            )
        )
    rows += sweep_rows(result)
    last = result.cycle_ends[-1] if result.cycle_ends else {}
    trims = last.get("trims")
    if trims:
        ms = (last.get("trim_s") or 0.0) * 1e3
        released = (last.get("trim_released") or 0.0) / 2**20
        rows.append(
            (
                "glibc malloc_trim at sweeps: count, pause (mean), RSS given back",
                f"{trims:,.0f}, {ms / trims:,.2f} ms, {released:,.1f} MB in all",
            )
        )
    return rows


def sweep_rows(result: SoakResult) -> list[tuple[str, str]]:
    """What the sweeps freed, over the cycles with a sweep: heap blocks beyond an ordinary full
    collection's fall (the measure), against that fall; and the objects the collector counted,
    which miss every cycle a generator's or coroutine's finalizer broke."""
    rows: list[tuple[str, str]] = []
    blocks = [v for v in after_restarts(result, "sweep_freed_blocks") if v is not None]
    ordinary = [v for v in after_restarts(result, "full_gc_freed_blocks") if v is not None]
    if blocks:
        rows.append(
            (
                "garbage a sweep freed (heap blocks beyond an ordinary full collection's; "
                "median, max)",
                f"{statistics.median(blocks):,.0f}, {max(blocks):,.0f} over {len(blocks)} "
                "cycles with a sweep (the frozen garbage the heap readings before each held), "
                f"against an ordinary full collection's {statistics.median(ordinary or [0]):,.0f}"
                " (young garbage and free lists; median)",
            )
        )
    objects = [v for v in after_restarts(result, "sweep_garbage") if v is not None]
    if objects:
        rows.append(
            (
                "objects a sweep's collector counted (median, max)",
                f"{statistics.median(objects):,.0f}, {max(objects):,.0f} over {len(objects)} "
                "cycles with a sweep (not the cycles a generator's finalizer broke: "
                "reference counting freed those, uncounted)",
            )
        )
    return rows


def late_by(result: SoakResult) -> Values:
    """How late each cycle's end was read (the k-th: after restart k), against the plan: just
    before restart k+1, or the run's end. A loaded machine delays a restart (the harness waits
    for each recovery), and a reading late by a good part of a cycle is at another phase of
    the burst and the storm, whose schedules loadsvc keeps on its own clock."""
    planned = [r.get("at_s") for r in result.restarts[1:]] + [result.duration_s]
    return [
        None if (t := end.get("t_s")) is None or at is None else t - at
        for end, at in zip(result.cycle_ends[1:], planned, strict=False)
    ]


def _late_note(result: SoakResult, n: int, width: int) -> str:
    """Words for the table when a reading in restart N's or 2N's window was late."""
    late = late_by(result)
    spans = [late[n - width : n], late[2 * n - width : 2 * n]]
    worst = [max([0.0, *(v for v in span if v is not None)]) for span in spans]
    if max(worst) < LATE_S:
        return ""
    return (
        f"; readings up to {worst[0]:,.0f} s and {worst[1]:,.0f} s late (restarts delayed by "
        "a loaded machine): not at the same phase of the load"
    )


def _trend_row(result: SoakResult, reading: Reading, values: Values) -> tuple[str, str]:
    """The trend fitted over the second half (restart N on): the first half holds the
    allocators' climb to the load's first peak, a step, not a rate."""
    half = len(values) // 2
    times = [end.get("t_s") for end in result.cycle_ends[1:]]
    points = [
        (t, v)
        for t, v in zip(times[half:], values[half:], strict=True)
        if t is not None and v is not None
    ]
    trend = fit_trend(points)
    if trend is None:
        return f"{reading.what}: fitted growth per day", "not measured (fewer than 3 cycles)"
    share, ci = trend.relative()
    return (
        f"{reading.what}: fitted growth per day over {trend.points} cycles from restart "
        f"{half} (95 % CI)",
        f"{trend.per_day * reading.scale:+,.1f} +- {trend.ci_per_day * reading.scale:,.1f} "
        f"{reading.unit}/day ({share * 100:+.1f} +- {ci * 100:.1f} %/day): {trend.verdict()}",
    )


def memory_rows(result: SoakResult) -> list[tuple[str, str]]:
    """Every reading after restart N against 2N over phase-matched windows, and the trend
    fitted over the cycles; then the high-water rows and the garbage per cycle."""
    rows: list[tuple[str, str]] = []
    past, when = past_first_period(result)
    width, window = phase_window(result)
    judged = set(JUDGED.values())
    for reading in READINGS:
        values = reading.values(result)
        pair = n_against_2n(result, reading.key)
        if pair is None or width is None:
            reason = "no readings" if not any(v is not None for v in values) else window
            reason = reason if width is None or reason == "no readings" else "a window unread"
            rows.append((f"{reading.what} after restart N -> 2N", f"not measured ({reason})"))
        else:
            n, first, second = pair
            known = sum(v is not None for v in values)
            note = f"; {window}"
            if reading.key.startswith("rss"):
                note += f"; {when}" + ("" if past else ": NOT past it")
            note += _late_note(result, n, width)
            role = "judged" if reading.key in judged else "shown"
            rows.append(
                (
                    f"{reading.what} after restart {n} -> {2 * n} ({role})",
                    f"{first * reading.scale:,.1f} -> {second * reading.scale:,.1f} "
                    f"{reading.unit} ({(second / first - 1) * 100:+.2f} %, limit "
                    f"+-{WITHIN * 100:g} %; {known} of {len(values)} cycles read{note})",
                )
            )
        if reading.fitted:
            rows.append(_trend_row(result, reading, values))
    rows += high_water_rows(result)
    garbage = garbage_per_cycle(result)
    rows.append(
        (
            "cyclic garbage freed per restart cycle (objects; median, max)",
            f"{statistics.median(garbage):,.0f}, {max(garbage):,.0f} over {len(garbage)} cycles"
            if garbage
            else "not measured",
        )
    )
    return rows
