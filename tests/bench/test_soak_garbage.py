"""bench/soak_garbage.py: what the collector finds, counted by what it is."""

from __future__ import annotations

import gc

from bench.soak_garbage import count_garbage, kind


class _Node:
    """An object that will sit in a reference cycle."""

    def __init__(self) -> None:
        self.me = self


def _raise_and_keep() -> None:
    try:
        raise ValueError("kept")
    except ValueError as exc:
        holder = [exc]
        holder.append(holder)  # the list holds the exception, whose traceback holds this frame


def test_cycles_are_counted_by_class_and_exceptions_by_the_code_that_raised_them() -> None:
    """100 self-referencing objects and 10 exceptions kept in their raising frame are found,
    named by their class and by the function that raised them, and then freed."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(100):
            _Node()
        for _ in range(10):
            _raise_and_keep()
        found, kinds = count_garbage()
        assert kinds[f"{__name__}._Node"] == 100
        assert kinds["exception ValueError"] == 10
        assert kinds[f"frame {__file__}:_raise_and_keep"] == 10
        assert found >= 100 + 10 * 3
        assert gc.garbage == []  # freed, not kept for the next count
        assert count_garbage()[1][f"{__name__}._Node"] == 0  # not found again
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert kind(len) == "builtin_function_or_method"


def test_cycles_that_died_frozen_are_counted_too() -> None:
    """loadsvc freezes what survives a full collection; 50 cycles that survived one and then
    died frozen are invisible to a collection, yet the count finds them (it unfreezes first),
    and what survives is frozen again after."""
    gc.collect()
    nodes = [_Node() for _ in range(50)]
    gc.freeze()
    del nodes  # cycles among frozen objects now
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        assert gc.collect() == 0  # a plain collection cannot see them
        found, kinds = count_garbage()
        assert kinds[f"{__name__}._Node"] == 50 and found >= 50
        assert gc.get_freeze_count() > 0  # the survivors frozen again
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.unfreeze()
        gc.collect()
