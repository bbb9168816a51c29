"""Where the resident memory of ``loadsvc serve`` is, by allocator: ``bench/soak.py --memory``.

Runs ``python -m loadsvc`` with the given arguments in this process and every ``--every``
seconds writes one JSON line to ``--out`` with each allocator's view of the process:

- ``rss_mb``: resident memory (``/proc/self/statm``);
- glibc's ``mallinfo2()``: ``arena_mb`` (the main heap, brk), ``used_mb`` and ``free_mb``
  (in use and held free in its free lists, every arena), ``mmap_mb`` (large blocks mapped
  on their own), ``top_mb`` (the releasable top of the heap);
- pymalloc's (``sys._debugmallocstats()``): ``arenas`` allocated now and their
  ``arenas_high`` water mark (1 MiB each), ``py_used_mb`` in allocated blocks,
  ``py_free_mb`` in free blocks of those arenas;
- the live heap in blocks (``sys.getallocatedblocks()``), objects frozen, and full
  collections so far.

With ``--tracemalloc-at T1,T2`` tracemalloc runs from the start (it costs memory and CPU:
the other figures of such a run are not the service's) and at each time (seconds from the
start) the top allocation sites by size are written, one ``{"at": T, "top": [...]}`` line
each; the soak compares the last with the first. With ``--census-at T1,T2`` the objects by
type that an unfreeze and a full collection free are written then (``bench/soak_census.py``). How issue 20's RSS was placed; a
diagnostic beside the soak's own table, not a goal.

    python bench/soak_memory.py --out memory.jsonl -- --log-json serve --port 9100 ...
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import runpy
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak_census import census

MB = 2**20
TOP = 25  # allocation sites written per tracemalloc snapshot


class _Mallinfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc >= 2.33): every field a ``size_t``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def glibc_view() -> dict[str, float]:
    """glibc's view of its heap, in MB ({} where mallinfo2 is not there: not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _Mallinfo2
    m = fn()
    return {
        "arena_mb": m.arena / MB,
        "used_mb": m.uordblks / MB,
        "free_mb": m.fordblks / MB,
        "mmap_mb": m.hblkhd / MB,
        "top_mb": m.keepcost / MB,
    }


_STAT = re.compile(r"^# (arenas allocated current|arenas highwater mark|bytes in allocated "
                   r"blocks|bytes in available blocks)\s*=\s*([\d,]+)", re.M)  # fmt: skip
_STAT_KEYS = {
    "arenas allocated current": ("arenas", 1),
    "arenas highwater mark": ("arenas_high", 1),
    "bytes in allocated blocks": ("py_used_mb", MB),
    "bytes in available blocks": ("py_free_mb", MB),
}


def pymalloc_view() -> dict[str, float]:
    """pymalloc's arenas and blocks, from ``sys._debugmallocstats()`` (which writes to the C
    stderr: it is pointed at a file for the call; a log line written meanwhile is passed on)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile("w+") as f:
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read()
    view = {}
    for key, value in _STAT.findall(text):
        name, unit = _STAT_KEYS[key]
        view[name] = int(value.replace(",", "")) / unit
    return view


def rss_mb() -> float:
    """Resident memory of this process."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def reading(t0: float) -> dict[str, float]:
    """Every view at once."""
    row: dict[str, float] = {"t": round(time.monotonic() - t0, 1), "rss_mb": rss_mb()}
    row |= glibc_view()
    row |= pymalloc_view()
    row["blocks"] = sys.getallocatedblocks()
    row["frozen"] = gc.get_freeze_count()
    row["full_gcs"] = gc.get_stats()[2]["collections"]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def top_sites(limit: int = TOP) -> list[list[object]]:
    """The allocation sites holding the most memory now: [file:line, KiB, blocks]."""
    stats = tracemalloc.take_snapshot().statistics("lineno")[:limit]
    return [[str(s.traceback[0]), round(s.size / 1024, 1), s.count] for s in stats]


def watch(out: Path, every: float, snapshots: list[float], censuses: list[float]) -> None:
    """Write one line per interval (and the snapshots and censuses when due), for as long as
    the process lives."""
    t0 = time.monotonic()
    due = sorted(snapshots)
    due_census = sorted(censuses)
    with out.open("w") as f:
        while True:
            time.sleep(every)
            line: dict[str, object] = dict(reading(t0))
            if due and time.monotonic() - t0 >= due[0]:
                line["snapshot_at"] = due.pop(0)
                line["top"] = top_sites()
            if due_census and time.monotonic() - t0 >= due_census[0]:
                line["census_at"] = due_census.pop(0)
                line["census"] = census()
            f.write(json.dumps(line) + "\n")
            f.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Start the watcher thread, then run loadsvc with the arguments after ``--``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--every", type=float, default=2.0, help="seconds between readings")
    p.add_argument("--tracemalloc-at", default="", help="seconds, comma-separated")
    p.add_argument("--census-at", default="", help="seconds, comma-separated (soak_census.py)")
    p.add_argument("loadsvc_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    rest = args.loadsvc_args[1:] if args.loadsvc_args[:1] == ["--"] else args.loadsvc_args
    snapshots = [float(s) for s in args.tracemalloc_at.split(",") if s]
    if snapshots:
        tracemalloc.start()
    censuses = [float(s) for s in args.census_at.split(",") if s]
    threading.Thread(
        target=watch, args=(args.out, args.every, snapshots, censuses), daemon=True
    ).start()
    sys.argv = ["loadsvc", *rest]
    runpy.run_module("loadsvc", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
