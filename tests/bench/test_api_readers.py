"""bench/api_readers.py: a toy paired run end to end, and the goal's arithmetic."""

from __future__ import annotations

from pathlib import Path

from bench.api_readers import Phase, goal_met, measure, parse_args, table


def test_a_toy_run_alternates_phases_against_a_real_serve_and_prints_the_pair(
    tmp_path: Path,
) -> None:
    """One pair of short phases: each has the service's lag p99, only the readers' phase read."""
    args = parse_args(
        ["--pairs", "1", "--readers", "5", "--scale", "0.02", "--warmup", "0.5", "--span", "1"]
    )
    ((none, some),) = measure(args, tmp_path)
    assert none.readers == 0 and none.reads == 0
    assert some.readers == 5 and some.reads > 0 and some.refused == 0
    assert none.lag_p99_ms is not None and some.lag_p99_ms is not None
    text = table([(none, some)], 5, "shared machine").text()
    assert "pair 1" in text and "median" in text and "shared machine" in text


def test_the_goal_is_the_median_difference_and_never_met_without_numbers() -> None:
    """Within 1 ms by the median of pairs; one bad pair of three does not decide; no data fails."""
    pair = lambda a, b: (Phase(0, a), Phase(50, b))  # noqa: E731
    assert goal_met([pair(4.0, 4.5), pair(4.0, 30.0), pair(5.0, 5.2)])
    assert not goal_met([pair(4.0, 6.0), pair(4.0, 30.0), pair(5.0, 5.2)])
    assert not goal_met([pair(4.0, None), (Phase(0), Phase(50))])
    assert "NOT met" in table([pair(4.0, 9.0)], 50, "").text()
