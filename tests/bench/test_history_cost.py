"""bench/history_cost.py times what it says: one append below the cap, then the append that
compacts the file to about half of it."""

from __future__ import annotations

import random

from bench.history_cost import measure


def test_the_compacting_append_is_the_one_timed_and_halves_the_file() -> None:
    cap = 256 * 1024
    got = measure(cap, 2, random.Random(3))
    assert len(got["append"]) == len(got["compact"]) == 2
    assert all(ms > 0 for ms in got["append"] + got["compact"])
    # Compacted to about half the cap (COMPACT_TO), not emptied and not left over it.
    assert all(0.35 * cap <= mib * 2**20 <= 0.55 * cap for mib in got["file_mib"])
    assert all(kept > 10 for kept in got["kept"])
