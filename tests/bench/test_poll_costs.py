"""bench/poll_costs.py: a wasted wake-up against a remove and add of the reader, both loops."""

from __future__ import annotations

import argparse

from bench import poll_costs
from loadsvc.users import readturns


def test_both_loops_are_measured_and_the_default_is_given_back() -> None:
    """Each loop kind gets a positive cost of both kinds, their ratio and every ready socket
    woken each turn; the table has a
    row per loop beside its BREAK_EVEN; the unpoll default is restored."""
    args = argparse.Namespace(sockets=[50], turns=20, repeats=1)
    results = poll_costs.run(args)
    assert [(r["loop"], r["sockets"]) for r in results] == [("uvloop", 50), ("asyncio", 50)]
    for r in results:
        assert r["move_us"] > 0 and r["wake_us"] > 0
        assert r["break_even"] == r["move_us"] / r["wake_us"]
        assert r["wakes_per_turn"] >= 1.0  # each ready socket, every turn
    assert readturns._unpoll_after == readturns._BREAK_EVEN
    text = poll_costs.table(results, args).text()
    assert "uvloop" in text and "asyncio" in text and "BREAK_EVEN" in text
