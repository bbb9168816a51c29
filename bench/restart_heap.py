"""What a target restart leaves behind in the generator: ``python bench/restart_heap.py``.

Holds ``--clients`` loadsvc streaming clients on the reference target, restarts the target
``2 N`` times (``--n``), and after restart 1, N and 2N (each once every client is back and
settled) takes the live Python heap three ways: the cyclic garbage a collection finds
(``gc.collect()``'s count: what waits for the collector, not leaked but not yet freed),
then, after it, tracemalloc's traced bytes and its top differences by source line, and
the objects tracked by the collector by type. Prints a table; exit status 1 if the
heap after restart 2N is more than 2 % above after restart N.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import sys
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench.restart_crowd import Crowd
from bench.table import Table

OUT = Path(__file__).resolve().parent / "results" / "restart_heap"
SETTLE_S = 2.0
WITHIN = 0.02


@dataclass
class HeapPoint:
    """The heap after one restart."""

    restart: int
    recovery_s: float | None
    garbage: int  # objects the collection freed: cycles the restart left to the collector
    traced_mb: float
    blocks: int
    by_type: Counter[str]
    snapshot: tracemalloc.Snapshot | None


async def point(restart: int, recovery: float | None) -> HeapPoint:
    """Collect, then read the live heap."""
    await asyncio.sleep(SETTLE_S)
    garbage = gc.collect()
    return HeapPoint(
        restart,
        recovery,
        garbage,
        tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else math.nan,
        sys.getallocatedblocks(),
        Counter(type(o).__name__ for o in gc.get_objects()),
        tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None,
    )


async def measure(args: argparse.Namespace) -> list[HeapPoint]:
    """Restart the target 2N times under the crowd; the heap after 1, N and 2N."""
    if args.trace:
        tracemalloc.start(8)
    points: list[HeapPoint] = []
    async with Crowd(args.clients, args.out) as crowd:
        for restart in range(1, 2 * args.n + 1):
            recovery = await crowd.restart(args.down)
            if restart in (1, args.n, 2 * args.n):
                points.append(await point(restart, recovery))
                print(f"restart {restart}: {points[-1].blocks:,} blocks", file=sys.stderr)
            else:
                await asyncio.sleep(0.5)
    tracemalloc.stop()
    return points


def growth_lines(first: HeapPoint, last: HeapPoint, top: int = 8) -> list[str]:
    """The source lines whose live allocations grew most from ``first`` to ``last``."""
    if last.snapshot is None or first.snapshot is None:
        return ["(not traced: --no-trace)"]
    stats = last.snapshot.compare_to(first.snapshot, "lineno")
    return [
        f"{s.size_diff / 1024:+8.1f} KiB {s.count_diff:+6d} blocks  {s.traceback[0]}"
        for s in stats[:top]
        if s.size_diff > 0
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table and what grew; 1 if the heap grew by more than 2 % from N to 2N."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=300)
    p.add_argument("--n", type=int, default=10, help="compare after restart N and 2N")
    p.add_argument("--down", type=float, default=0.5, help="seconds the target stays down")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument(
        "--no-trace",
        dest="trace",
        action="store_false",
        help="without tracemalloc: judge the interpreter's allocated blocks",
    )
    args = p.parse_args(argv)
    points = uvloop.run(measure(args))
    middle, last = points[1], points[2]
    rows = [
        [
            str(pt.restart),
            "-" if pt.recovery_s is None else f"{pt.recovery_s:.2f}",
            f"{pt.garbage:,}",
            f"{pt.traced_mb:.2f}",
            f"{pt.blocks:,}",
            f"{sum(pt.by_type.values()):,}",
        ]
        for pt in points
    ]
    # The traced heap where tracemalloc ran (its own tables are not in it); else the blocks.
    heap = (last.traced_mb, middle.traced_mb) if args.trace else (last.blocks, middle.blocks)
    rise = heap[0] / heap[1] - 1
    table = Table(
        f"The live heap after target restarts: {args.clients} clients, after restart 1, N, 2N",
        ["after restart", "all back (s)", "cyclic garbage", "heap MB", "blocks", "gc objects"],
        rows,
        note=f"{'heap' if args.trace else 'blocks'} after restart {last.restart} vs {middle.restart}: {rise * 100:+.2f} % "
        f"(limit {WITHIN * 100:g} %); garbage counted by the gc.collect() before each reading.",
    )
    types = (last.by_type - middle.by_type).most_common(8)
    text = "\n".join(
        [
            table.text(),
            f"grown from restart {middle.restart} to {last.restart} by source line:",
            *growth_lines(middle, last),
            "object types with more instances: "
            + (", ".join(f"{name} +{n}" for name, n in types) or "none"),
        ]
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "restart_heap.txt").write_text(text + "\n")
    return 0 if rise <= WITHIN else 1


if __name__ == "__main__":
    sys.exit(main())
