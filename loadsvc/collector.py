"""The cyclic garbage collector of a load generator's process: start-up's heap frozen.

A collection runs inside whichever callback allocated last, so its pause is the loop's
lag, and every latency timed meanwhile is late by as much (:mod:`loadsvc.lag`). A full
collection walks every tracked object, and a backend restart is what triggers one: each
new connection is ~50 tracked objects that survive, 25,000 for 500 clients, promoted
together, and Python runs a full collection once the old generation has grown by a
quarter (issue 20, ``bench/reconnect_calm.py``: about one full collection per restart of
500 clients, 60-130 ms on a loaded 2-core machine).

What start-up made (modules, configuration: ~57,000 objects once ``serve`` is imported)
lives as long as the process, yet every full collection walked it again. Frozen, it is
never walked and never freed; only the first start-up's heap is frozen, so nothing made
under load is.

Python's thresholds stay. Measured and not taken: (700, 3, 100) halved the collector's
largest pause at a restart (the middle generation collected a third as much at a time,
full collections ten times rarer), but what cyclic garbage the service's other work makes
then waited far longer for a full collection: the accelerated soak's RSS sat ~10 MB
higher and its heap after restart 40 read +6.7 % on restart 20 (README "Reliability").
"""

from __future__ import annotations

import functools
import gc

__all__ = ["calm_collector"]


@functools.cache  # once a process: a later call would freeze what was made under load
def calm_collector() -> None:
    """Collect, then freeze what start-up made (call once, before the load)."""
    gc.collect()
    gc.freeze()
