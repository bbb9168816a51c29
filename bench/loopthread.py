"""The event loop's thread of another process, read from ``/proc``: CPU time, time spent
waiting for a CPU, major faults. What the soak reads beside loadsvc's loop lag.

A lag over the trust limit is the loop's own work (its thread ran: CPU time), or its thread
was ready and did not run (``run_delay`` in ``schedstat``: another thread held its core, one
of loadsvc's own, such as the collector's clock, or another process's), or it slept on a
major fault (a page read back from disk). The other threads' CPU time is read too: waiting
beyond it is the machine's. loadsvc's loop is its process's main thread, so the thread read
is the one whose id is the PID.
Linux only; elsewhere, or once the process is gone, a reading is None.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ThreadTimes:
    """One reading: totals since the thread started."""

    cpu_s: float  # on a CPU (schedstat's first field, in ns: not tick-sampled)
    wait_s: float  # ready to run but waiting for a CPU (schedstat's run_delay)
    major_faults: int  # the process's (the kernel counts them per process and per thread)
    system_s: float  # of cpu_s, in the kernel (stat's stime, tick-sampled)
    others_cpu_s: float = 0.0  # the process's other threads on a CPU (those alive at both reads)
    others: tuple[tuple[int, float], ...] = ()  # (thread id, its CPU seconds) behind the sum

    def since(self, before: ThreadTimes) -> ThreadTimes:
        """What happened between ``before`` and this reading."""
        earlier = dict(before.others)
        others = sum(max(0.0, cpu - earlier[tid]) for tid, cpu in self.others if tid in earlier)
        return ThreadTimes(
            self.cpu_s - before.cpu_s,
            self.wait_s - before.wait_s,
            self.major_faults - before.major_faults,
            self.system_s - before.system_s,
            others,
        )


def read(pid: int, tid: int | None = None) -> ThreadTimes | None:
    """Thread ``tid`` (default: the main thread, ``pid``) of process ``pid`` now; None where
    ``/proc`` cannot tell (not Linux, no schedstat, the process gone)."""
    task = f"/proc/{pid}/task/{pid if tid is None else tid}"
    try:
        with open(f"{task}/schedstat", "rb") as f:
            run_ns, delay_ns, _ = f.read().split()
        with open(f"{task}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, ValueError):
        return None
    main = pid if tid is None else tid
    others = []
    with contextlib.suppress(OSError):
        for name in os.listdir(f"/proc/{pid}/task"):
            if int(name) == main:
                continue
            try:
                with open(f"/proc/{pid}/task/{name}/schedstat", "rb") as f:
                    others.append((int(name), int(f.read().split()[0]) / 1e9))
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended meanwhile
    # After the command's closing parenthesis: state is field 3 of stat(5), so field n is n - 3.
    return ThreadTimes(
        int(run_ns) / 1e9,
        int(delay_ns) / 1e9,
        int(fields[12 - 3]),
        int(fields[15 - 3]) * _TICK_S,
        sum(cpu for _, cpu in others),
        tuple(others),
    )
