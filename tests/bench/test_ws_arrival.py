"""bench/ws_arrival.py: kernel beside loop clock against the target's ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import ws_arrival
from bench.trial import Environment


def gaps(p50: float | None, p99: float | None, frames: int, truth: int) -> dict[str, Any]:
    """A row with just what the 'within 5 ms' column reads."""
    return {"p50_gap_ms": p50, "p99_gap_ms": p99, "frames": frames, "truth_count": truth}


def test_within_five_ms_is_never_claimed_over_no_data() -> None:
    """Small gaps are 'yes'; one large gap 'no'; no frames or no truth is 'no data', not 'yes'."""
    assert ws_arrival._within(gaps(0.4, -1.0, 100, 100)) == "yes"
    assert ws_arrival._within(gaps(0.4, 6.0, 100, 100)) == "no"
    assert ws_arrival._within(gaps(0.0, 0.0, 0, 100)) == "no data"
    assert ws_arrival._within(gaps(0.0, 0.0, 100, 0)) == "no data"
    assert ws_arrival._within(gaps(None, 0.0, 100, 100)) == "no data"


def test_a_toy_trial_runs_on_the_clock_it_was_given(tmp_path: Path) -> None:
    """At 8 connections on the loop clock the row has frames, the truth, and the summary says loop."""
    row = ws_arrival.trial(Environment(tmp_path), 8, "loop", 0.3, 1.0)
    assert row["reported_clock"] == "loop"
    assert row["truth_count"] >= row["frames"] > 0
    assert row["p50_gap_ms"] is not None and row["shared"] is not None
    assert "loop (summary: loop)" in ws_arrival.table([row], "toy").text()
