"""The cyclic garbage collector set for a load generator's event loop: short pauses.

A collection runs inside whichever callback allocated last, so its pause is the loop's
lag, and every latency timed meanwhile is late by as much (:mod:`loadsvc.lag`). What a
collection walks decides its pause. A backend restart is when it walks most: each new
connection is ~50 tracked objects that survive, 25,000 for 500 clients, all promoted
together (issue 20, ``bench/reconnect_calm.py``, on a loaded 2-core machine):

- with Python's thresholds (700, 10, 10) the middle generation collects ten young batches
  at once, ~20,000 objects, a pause of 15-30 ms, once or twice a restart; and the
  promotions trigger a full collection about once a restart, 60-130 ms over the whole heap.
- at (700, 3, 100) the middle generation holds about three batches (5-10 ms), and a full
  collection waits for 100 of its collections as well as for the old generation to have
  grown by a quarter (Python's own rule): one every several restarts, not one each.
  Cyclic garbage is still collected, only less often: loadsvc leaves none per restart
  (``tests/users/test_ws_restarts.py``), and what other code leaves waits minutes at most.
- frozen, what start-up made (modules, configuration: ~57,000 objects for ``serve``)
  is never walked again, so a full collection walks only what the run holds. It is never
  freed either; only the first start-up's heap is frozen, so nothing made under load is.
"""

from __future__ import annotations

import functools
import gc

__all__ = ["THRESHOLDS", "calm_collector"]

# (allocations before a young collection, young collections before a middle one, middle
# collections before a full one may run): see the module docstring for the measurements.
THRESHOLDS = (700, 3, 100)


@functools.cache  # once a process: a later call would freeze what was made under load
def calm_collector() -> None:
    """Freeze what start-up made and set :data:`THRESHOLDS` (call once, before the load)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
