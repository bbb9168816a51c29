"""What a sweep would free, by type: unfreeze and collect on serve's loop, counting before and after.

``bench/soak.py --memory --census-at T1,T2`` (through ``bench/soak_memory.py``): at each time
the loop's thread, with the young collections held and the collector's hooks set aside,
counts the objects the collector tracks by type (frozen ones included), unfreezes, collects,
counts again and freezes what is left. The types that fell are what died frozen: the garbage
that waited for a sweep. ``collected`` is the collector's own count, which misses every cycle a
generator's or coroutine's finalizer breaks (those are freed by reference counting first):
read the blocks and the types. The census is itself a sweep: the readings after one start
from a swept heap. How issue 20's dead protocols were found (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
from collections import Counter
from typing import Any

from loadsvc.collector import young_collections

TYPES = 30  # types written, those that fell most first


def main_loop() -> asyncio.AbstractEventLoop | None:
    """The loop the main thread runs: the ``_loop`` of a ``self`` on its stack (asyncio.run's
    runner), read from another thread."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None:
        loop = getattr(frame.f_locals.get("self"), "_loop", None)
        if isinstance(loop, asyncio.AbstractEventLoop):
            return loop
        frame = frame.f_back
    return None


def _census() -> dict[str, Any]:
    """On the loop's thread: tracked objects by type, before and after unfreeze + collect."""
    young = young_collections()
    held = young.held() if young is not None else contextlib.nullcontext()
    hooks = list(gc.callbacks)
    gc.callbacks.clear()  # the collector's own hook would freeze the survivors at once
    try:
        with held:
            blocks = [sys.getallocatedblocks()]
            gc.unfreeze()
            before = Counter(type(o) for o in gc.get_objects())
            collected = gc.collect()
            blocks.append(sys.getallocatedblocks())
            after = Counter(type(o) for o in gc.get_objects())
            gc.freeze()
    finally:
        gc.callbacks.extend(hooks)
    fell = sorted(((after[t] - n, t) for t, n in before.items()), key=lambda d: d[0])
    return {
        "collected": collected,
        "blocks": blocks,
        "objects": [sum(before.values()), sum(after.values())],
        "fell": [[n, f"{t.__module__}.{t.__qualname__}"] for n, t in fell[:TYPES] if n < 0],
    }


def census(timeout_s: float = 60.0) -> dict[str, Any]:
    """Run the census on serve's loop from this (watcher) thread; wait for it."""
    loop = main_loop()
    if loop is None:
        return {"error": "no running loop found on the main thread"}
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box.update(_census())
        finally:
            done.set()

    loop.call_soon_threadsafe(run)
    if not done.wait(timeout_s):
        return {"error": f"the loop did not run the census within {timeout_s:.0f} s"}
    return box
