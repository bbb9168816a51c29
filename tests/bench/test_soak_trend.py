"""bench/soak_trend.py and the soak's memory goals: plateau, slow leak, or no data."""

from __future__ import annotations

import random

from bench.soak import goals
from bench.soak_judge import garbage_per_cycle, memory_rows
from bench.soak_report import Sample, SoakResult
from bench.soak_trend import DAY_S, fit_trend, n_to_2n, over, within

GARBAGE_ROW = "cyclic garbage freed per restart cycle (objects; median, max)"
RSS_GOAL = (
    "RSS ceiling after restart 40 within 2 % of after restart 20, its high-water not 2 % higher"
)


def test_a_fitted_line_recovers_a_known_leak_within_its_interval() -> None:
    """100 noisy points rising 3 MB a day: the fit's 95 % interval holds 3 and excludes 0."""
    rng = random.Random(4)
    points = [(t * 600.0, 100.0 + 3.0 * t * 600.0 / DAY_S + rng.gauss(0, 0.05)) for t in range(100)]
    trend = fit_trend(points)
    assert trend is not None and trend.points == 100
    assert abs(trend.per_day - 3.0) <= trend.ci_per_day
    assert trend.verdict() == "growing"


def test_noise_around_a_plateau_is_no_trend_and_a_short_run_says_how_little_it_knows() -> None:
    """Flat noise: the interval holds 0; ten minutes of it give an interval far wider than a
    day of the same noise does."""
    rng = random.Random(5)
    short = [(t * 15.0, 100.0 + rng.gauss(0, 0.5)) for t in range(40)]
    long = [(t * 2160.0, 100.0 + rng.gauss(0, 0.5)) for t in range(40)]
    s, lo = fit_trend(short), fit_trend(long)
    assert s is not None and lo is not None
    assert s.verdict() == "no trend" and lo.verdict() == "no trend"
    assert s.ci_per_day > 50 * lo.ci_per_day
    assert fit_trend(short[:2]) is None  # two points: no interval, no verdict


def test_n_against_2n_reads_the_middle_and_the_last_restarts() -> None:
    """With 41 readings N is 20: the medians of the five readings ending at the 20th and at
    the 40th, so one reading caught mid-burst does not decide; no reading is no verdict."""
    values: list[float | None] = [100.0 + i for i in range(41)]
    assert n_to_2n(values) == (20, 117.0, 137.0)
    values[19] = 1000.0  # a reading taken with a burst's frames in flight
    assert n_to_2n(values) == (20, 117.0, 137.0)
    values[15:20] = [None] * 5
    assert n_to_2n(values) is None
    assert n_to_2n([100.0]) is None
    assert within(100.0, 101.9) and not within(100.0, 102.1) and not within(100.0, 97.9)
    assert over([5.0, None, 25.0, 10.0], 10.0) == (1, 3)


def _result(rss: list[float], heap: list[float | None]) -> SoakResult:
    """A soak of len(rss) restarts, recovered in 1 s with a calm loop, the load repeating
    every cycle, and these readings at each cycle's end (a sample there too)."""
    result = SoakResult(600.0, 30.0, 0.3)
    result.phase_cycles = 1
    result.samples = [
        Sample(40.0 + 10 * i, r, None, None, None, None, None, heap_blocks=h)
        for i, (r, h) in enumerate(zip(rss, heap, strict=True))
    ]
    result.restarts = [
        {"at_s": 30.0 + 10 * i, "recovery_s": 1.0, "lag_p99_ms": 5.0} for i in range(len(rss))
    ]
    # A full collection in every cycle: each cycle's heap reading is its own.
    result.cycle_ends = [
        {"t_s": 30.0, "rss_mb": rss[0], "heap_blocks": heap[0], "heap_gc_blocks": heap[0]}
    ] + [
        {"t_s": 40.0 + 10 * i, "rss_mb": r, "heap_blocks": h, "heap_gc_blocks": h, "full_gcs": i}
        for i, (r, h) in enumerate(zip(rss, heap, strict=True))
    ]
    high = 0.0
    for end in result.cycle_ends:  # the process's high-water of RSS, as /proc gives it
        high = max(high, end["rss_mb"] or 0.0)
        end["rss_hwm_mb"] = high
    return result


def test_a_leak_of_a_tenth_of_a_percent_per_restart_fails_the_soak() -> None:
    """A leak too slow for two thirds of a short run is 2 % by restart 2N against N = 20:
    the goal says NOT met; the same run without the leak meets it."""
    leaking = [100.0 * (1.001**i) for i in range(40)]
    flat = [100.0 + (i % 3) * 0.1 for i in range(40)]
    blocks: list[float | None] = [300_000.0] * 40
    met = _goals(_result(leaking, blocks))
    assert met[RSS_GOAL] is False
    assert met["live heap after restart 40 within 2 % of after restart 20"] is True
    met = _goals(_result(flat, blocks))
    assert met[RSS_GOAL] is True


def _goals(result: SoakResult) -> dict[str, bool]:
    """The goals by their words up to a parenthesis (which holds the run's figures)."""
    return {goal.split(" (")[0]: met for goal, met in goals(result)}


def test_rss_is_judged_only_once_the_schedule_has_run_a_full_period() -> None:
    """A flat RSS whose restart N came before the end of the scheduled load's first period
    (the burst not yet seen) does not meet the goal, and the table says why."""
    result = _result([100.0] * 40, [300_000.0] * 40)
    result.schedule_period_s = 10_000.0
    assert _goals(result)[RSS_GOAL] is False
    (row,) = [
        v
        for k, v in memory_rows(result)
        if k.startswith("RSS ceiling (highest sample in the cycles) after")
    ]
    assert "NOT past it" in row
    result.schedule_period_s = 150.0  # restart 20's window starts at 180 s
    assert _goals(result)[RSS_GOAL] is True


def test_a_heap_reading_no_full_collection_refreshed_is_no_reading() -> None:
    """Cycles in which no full collection ran repeat an older cycle's reading: they are not
    that cycle's heap after a full collection, and with none around N or 2N the table says
    not measured."""
    result = _result([100.0] * 40, [300_000.0] * 40)
    for end in result.cycle_ends[12:]:  # no full collection after restart 11
        end["full_gcs"] = 11.0
    rows = dict(memory_rows(result))
    assert rows["live heap after a full collection in the cycle after restart N -> 2N"].startswith(
        "not measured"
    )


def test_no_heap_readings_is_not_a_flat_heap() -> None:
    """A soak whose loadsvc exported no heap gauge does not pass the heap goal on no data,
    and its table says not measured."""
    result = _result([100.0] * 40, [None] * 40)
    met = _goals(result)
    assert met["live heap after restart 40 within 2 % of after restart 20"] is False
    rows = dict(memory_rows(result))
    assert rows["live heap after a full collection in the cycle after restart N -> 2N"].startswith(
        "not measured"
    )


def test_a_restart_the_loop_lagged_through_fails_the_lag_goal() -> None:
    """One restart whose recovery lagged 25 ms (over the 10 ms limit) fails the lag goal; one
    with no lag reading fails it too (no data is not calm)."""
    result = _result([100.0] * 40, [300_000.0] * 40)
    key = "loop lag p99 at every restart within the trust limit (10 ms)"
    assert dict(goals(result))[key] is True
    result.restarts[7]["lag_p99_ms"] = 25.0
    assert dict(goals(result))[key] is False
    result.restarts[7]["lag_p99_ms"] = None
    assert dict(goals(result))[key] is False


def test_the_garbage_of_a_cycle_is_the_rise_of_the_collectors_count() -> None:
    """The table's garbage per cycle is the rise of loadsvc's freed-objects counter between
    two cycle ends (15,000 a cycle reads 15,000, not the running total); none read, none
    claimed."""
    result = _result([100.0] * 40, [300_000.0] * 40)
    for i, end in enumerate(result.cycle_ends):
        end["gc_freed"] = 5_000.0 + 15_000.0 * i
    assert garbage_per_cycle(result) == [15_000.0] * 40
    assert dict(memory_rows(result))[GARBAGE_ROW] == "15,000, 15,000 over 40 cycles"
    for end in result.cycle_ends:
        del end["gc_freed"]
    assert dict(memory_rows(result))[GARBAGE_ROW] == "not measured"
