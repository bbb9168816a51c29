"""bench/read_turns.py: long loop turns with the read budget and without, paired."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
from pathlib import Path

import pytest

from bench import read_turns
from bench.target import TargetProcess
from loadsvc.users import arrival, readturns


@pytest.mark.skipif(not arrival.SUPPORTED, reason="the kernel does not stamp reads")
def test_a_toy_run_has_both_modes_frames_and_their_gap_to_the_truth(tmp_path: Path) -> None:
    """At 8 connections each window has frames in order, turns timed, and a gap to the truth."""
    args = argparse.Namespace(connections=8, rounds=1, window=1.5, budget_ms=1.5, spin=True)
    target = TargetProcess(min(os.sched_getaffinity(0)), tmp_path / "target.log")
    try:
        rows = asyncio.run(read_turns.measure(args, target))
    finally:
        target.close()
        readturns.set_budget(readturns.BUDGET_S)
    assert gc.isenabled()  # the collector is the bench's to stop, and to give back
    assert [r["mode"] for r in rows] == ["none", "1.5 ms"]
    for row in rows:
        assert row["frames"] > 0 and row["gaps"] == row["reorders"] == 0
        assert row["turns"] > 0 and row["kernel_conns"] == 8
        assert row["gap_p50_ms"] is not None and row["gap_p99_ms"] is not None
    text = read_turns.table(rows, args).text()
    assert "budget none" in text and "budget 1.5 ms" in text


def test_no_gap_is_claimed_over_no_frames() -> None:
    """A window without frames has no latency quantile, so no gap to the truth."""
    assert read_turns._q(read_turns.array("d"), 0.99) is None
    assert read_turns._ms(None) is None
