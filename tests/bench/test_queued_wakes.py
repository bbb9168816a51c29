"""bench/queued_wakes.py: queued sockets woken every turn against taken off the poll, paired."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
from pathlib import Path

import pytest

from bench import queued_wakes
from bench.target import TargetProcess
from loadsvc.users import arrival, readturns


@pytest.mark.skipif(not arrival.SUPPORTED, reason="the kernel does not stamp reads")
def test_a_toy_run_has_both_modes_their_frames_and_their_wake_ups(tmp_path: Path) -> None:
    """At 40 connections, each started behind, both modes read every frame in order; only
    the default takes sockets off the poll; the table says how many windows got stuck."""
    args = argparse.Namespace(connections=40, passes=1, window=2.0, stall_ms=600.0, other_load=0.2)
    target = TargetProcess(min(os.sched_getaffinity(0)), tmp_path / "target.log")
    readturns.set_budget(0.0)  # one socket a turn: 40 sockets queue behind the stall
    try:
        rows = asyncio.run(queued_wakes.measure(args, target))
    finally:
        target.close()
        readturns.set_budget(readturns.BUDGET_S)
    assert gc.isenabled()  # the collector is the bench's to stop, and to give back
    assert readturns._unpoll_after == readturns._BREAK_EVEN  # the default given back
    assert [r["mode"] for r in rows] == list(queued_wakes.MODES)
    before, default = rows
    for row in rows:
        assert row["frames_per_s"] > 0 and row["gaps"] == row["reorders"] == 0
        assert row["kernel_conns"] == 40 and row["left_per_s"] > 0
    assert before["unpolled_per_s"] == 0 and before["wakes_per_s"] > 0
    assert default["unpolled_per_s"] > 0
    text = queued_wakes.table(rows, args).text()
    assert "windows stuck behind" in text and "of 1" in text


def test_the_backlog_is_read_at_the_first_empty_sample_after_sockets_queued() -> None:
    """Empty samples before the loop queued anything do not count as caught up."""
    samples = [(1.0, 0), (1.05, 1800), (1.1, 900), (1.15, 0), (1.2, 5)]
    assert queued_wakes._caught_up(samples, 15.0) == 1.15
    assert queued_wakes._caught_up([(1.0, 0), (1.05, 3)], 15.0) == 15.0
    assert queued_wakes._caught_up([(1.0, 0)], 15.0) == 0.0
