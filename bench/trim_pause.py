"""glibc's trim and the event loop's pause: ``python bench/trim_pause.py [--rounds 8]``.

After every sweep :mod:`loadsvc.collector` runs ``malloc_trim(0)``, which walks glibc's heap
and gives its free pages back (16.8 ms at the seed's full size, docs/reliability.md). Run on the
loop's thread, all of it is the loop's pause. ctypes lets go of the GIL during a foreign call,
so run in another thread the trim would not hold the loop, except where the loop's own
``malloc``/``free`` waits on the lock of glibc's arena, which the trim holds while it walks
that arena (the main thread's allocations are all in the main arena, which the trim walks).

This builds a heap of the full size's shape in this process's main arena (``--heap-mb`` of
buffers of 1-64 KiB, every other one freed: half of it free between live blocks), then turns a
loop on the main thread (each turn allocates and frees a few buffers of frame sizes and some
small objects, as a turn reading frames does) and trims mid-way, the modes taking turns (a
paired run): ``on the loop`` (the trim called in a turn), ``own thread`` (a thread started for
it), ``none`` (no trim: the machine's own noise) and ``own thread, loop without buffers`` (a
control: the loop's turn allocates small objects only, pymalloc's, so never takes glibc's lock). Per mode, the
medians over rounds of: the trim's wall and CPU time, the loop's longest gap between two turns
from the trim's start to its end (wall), the loop's CPU time in its longest turn, the longest
gap in which the loop's thread waited (a voluntary context switch: on the arena's lock, or on
the GIL; being descheduled for another thread or process is not one), the turns it made
meanwhile, and its voluntary context switches meanwhile.
"""

from __future__ import annotations

import argparse
import ctypes
import random
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import Table

FRAME_SIZES = (600, 1500, 4096, 9000)  # a turn's buffers: glibc's, not pymalloc's (> 512 B)
# The last: the loop allocating no buffers of glibc's (a control: what is left is not the lock).
MODES = ("none", "on the loop", "own thread", "own thread, loop without buffers")


def _trim_fn() -> Callable[[int], int]:
    fn = ctypes.CDLL(None).malloc_trim
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def _voluntary_switches() -> int:
    """This thread's voluntary context switches (waits), from /proc."""
    tid = threading.get_native_id()
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    return 0


def build_heap(heap_mb: float, rng: random.Random) -> list[bytes]:
    """Buffers of 1-64 KiB written (resident) up to ``heap_mb``; every other one freed."""
    live: list[bytes] = []
    total = 0
    while total < heap_mb * 2**20:
        n = rng.randint(1024, 64 * 1024)
        live.append(b"\x01" * n)
        total += n
    del live[::2]
    return live


def one_round(mode: str, heap_mb: float, rng: random.Random, turns_before: int) -> dict[str, float]:
    """Build the heap, turn the loop, trim (by ``mode``) after ``turns_before`` turns."""
    heap = build_heap(heap_mb, rng)
    trim = _trim_fn()
    walls: list[float] = []
    cpus: list[float] = []
    waits: list[int] = []  # the loop thread's voluntary context switches so far, per turn
    rusage = resource.getrusage
    thread = resource.RUSAGE_THREAD
    done = threading.Event()
    trim_times: dict[str, float] = {}

    def run_trim() -> None:
        c0, w0 = time.thread_time(), time.perf_counter()
        trim(0)
        trim_times["cpu"] = time.thread_time() - c0
        trim_times["wall"] = time.perf_counter() - w0
        done.set()

    started_at = ended_at = 0.0
    switches = 0
    keep: list[object] = []
    sizes = (100, 200, 300, 400) if mode.endswith("without buffers") else FRAME_SIZES
    for i in range(turns_before * 4):
        walls.append(time.perf_counter())
        cpus.append(time.thread_time())
        waits.append(rusage(thread).ru_nvcsw)
        bufs = [b"\x02" * s for s in sizes]  # a turn's frames, read and dropped
        keep.append(([i], {"n": i}))  # and a few small objects that live a while
        if len(keep) > 64:
            keep.pop(0)
        del bufs
        if i == turns_before:
            switches = _voluntary_switches()
            started_at = time.perf_counter()
            if mode == "on the loop":
                run_trim()
            elif mode.startswith("own thread"):
                threading.Thread(target=run_trim, daemon=True).start()
            else:
                done.set()
        if started_at and not ended_at and done.is_set():
            ended_at = time.perf_counter()
            switches = _voluntary_switches() - switches
    walls.append(time.perf_counter())
    cpus.append(time.thread_time())
    waits.append(rusage(thread).ru_nvcsw)
    if not ended_at:  # the trim outlasted the loop's turns: wait, and judge what ran
        done.wait()
        ended_at = time.perf_counter()
        switches = _voluntary_switches() - switches
    # Gaps between turn starts within the trim's span (and the turn that began before it).
    first = next(i for i, w in enumerate(walls) if w >= started_at) - 1
    last = next((i for i, w in enumerate(walls) if w > ended_at), len(walls) - 1)
    gaps = [walls[i + 1] - walls[i] for i in range(max(0, first), last)]
    turn_cpu = [cpus[i + 1] - cpus[i] for i in range(max(0, first), last)]
    waited = [
        walls[i + 1] - walls[i] for i in range(max(0, first), last) if waits[i + 1] > waits[i]
    ]
    del heap
    return {
        "trim_wall_ms": trim_times.get("wall", 0.0) * 1e3,
        "trim_cpu_ms": trim_times.get("cpu", 0.0) * 1e3,
        "gap_max_ms": max(gaps, default=0.0) * 1e3,
        "turn_cpu_max_ms": max(turn_cpu, default=0.0) * 1e3,
        "wait_max_ms": max(waited, default=0.0) * 1e3,
        "turns": float(len(gaps)),
        "switches": float(switches),
    }


def main(argv: list[str] | None = None) -> int:
    """Paired rounds of every mode; one table of medians."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heap-mb", type=float, default=90.0, help="glibc heap built (half freed)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--turns", type=int, default=20_000, help="loop turns before the trim")
    args = p.parse_args(argv)
    rng = random.Random(20)
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        order = MODES if r % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            results[mode].append(one_round(mode, args.heap_mb, rng, args.turns))
    cols = [
        ("trim (wall ms)", "trim_wall_ms"),
        ("trim (CPU ms)", "trim_cpu_ms"),
        ("loop's longest gap (wall ms)", "gap_max_ms"),
        ("loop's longest turn (CPU ms)", "turn_cpu_max_ms"),
        ("loop's longest gap with a wait (wall ms)", "wait_max_ms"),
        ("loop turns meanwhile", "turns"),
        ("loop's waits meanwhile", "switches"),
    ]
    rows = []
    for mode in MODES:
        runs = results[mode]
        cells = [mode]
        for _, key in cols:
            values = [run[key] for run in runs]
            cells.append(f"{statistics.median(values):.1f} (max {max(values):.1f})")
        rows.append(cells)
    table = Table(
        f"malloc_trim(0) over a {args.heap_mb:g} MB glibc heap, half free: the loop's pause "
        f"({args.rounds} paired rounds, median (max))",
        ["trim", *(c for c, _ in cols)],
        rows,
        note="gap: between two turns' starts from the trim's start to its end; waits: "
        "voluntary context switches of the loop's thread (a lock or the GIL).",
    )
    table.print_both()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
