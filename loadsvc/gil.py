"""How the event loop's thread shares the GIL with the helper threads beside it.

Work that would hold the loop for milliseconds runs in a thread: a verdict window is judged
there (:mod:`loadsvc.runner`), a configuration reloaded, sockets counted for ``/metrics``.
Python in such a thread holds the GIL, and the loop's thread, which lets go of it at every
system call (each poll, each socket read), must then wait for it to be handed back: up to
the interpreter's switch interval each time, 5 ms by default. A lag probe on a mostly idle
loop beside a thread running 40 ms of Python every 300 ms read, over that thread's bursts,
p50 4.4 ms and p99 10.9 ms at 5 ms; 1.1 and 5.5 ms at 1 ms; 0.7 and 2.7 ms at 0.5 ms, the
bursts 43 ms of wall time at each (``bench/switch_interval.py``, one core, paired,
2026-12-04).
The collector's own thread (:class:`loadsvc.collector.YoungCollections`) is unaffected:
a collection is one stretch of C that no interval interrupts.
"""

from __future__ import annotations

import sys

# How long a thread may hold the GIL while another waits for it: the loop waits at most
# this long behind a helper thread's Python, once per system call.
SWITCH_INTERVAL_S = 0.0005


def share_quickly() -> None:
    """Set the interpreter's switch interval for a process whose loop times what it reads."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
