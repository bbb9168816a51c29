"""bench/soak_memory.py: each allocator's view of the process, read in it."""

from __future__ import annotations

import sys

from bench.soak_memory import glibc_view, pymalloc_view, reading


def test_a_reading_has_every_allocators_view_and_pymalloc_follows_what_is_allocated() -> None:
    """RSS, glibc's heap (where mallinfo2 is there), pymalloc's arenas and the live heap are
    read at once; 200,000 small objects more raise pymalloc's blocks in use by ~their size."""
    row = reading(0.0)
    assert row["rss_mb"] > 1 and 0 < row["blocks"] <= sys.getallocatedblocks() * 2
    assert {"arenas", "arenas_high", "py_used_mb", "py_free_mb"} <= row.keys()
    assert row["arenas_high"] >= row["arenas"] > 0
    before = pymalloc_view()["py_used_mb"]
    kept = [(i, i) for i in range(200_000)]  # ~64 bytes each in pymalloc's pools
    after = pymalloc_view()["py_used_mb"]
    assert after - before > 200_000 * 48 / 2**20, (before, after)
    glibc = glibc_view()
    if glibc:  # glibc >= 2.33
        assert glibc["used_mb"] > 0 and glibc["arena_mb"] >= glibc["used_mb"]
    assert len(kept) == 200_000
