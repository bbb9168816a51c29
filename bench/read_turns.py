"""Long loop turns from a broadcast's reads, with the read budget and without, paired.

``python bench/read_turns.py [--connections 500] [--rounds 4] [--window 20] [--budget-ms 1.5]``

A reference target (a child process, pinned to this process's first allowed core)
publishes ``/ws/market`` to N WS connections that this process holds on uvloop,
the way ``loadsvc run`` holds them (``stamped_connect``, ``TimedConnection``, kernel
receive stamps; each frame parsed as JSON and timed). A task that yields at every
turn of the loop times each turn in this thread's CPU time (as ``bench/soak_turns.py``
does; the machine's other load does not inflate it). Windows alternate the read
budget (:mod:`loadsvc.users.readturns`: ``--budget-ms`` of reading a turn, the rest
of a broadcast's sockets read in later turns) with no budget (every ready socket read
in the turn it is found), the order reversed every other round, over the same
connections: paired. Per window: turns over 2/5/10 ms of CPU per minute and the
longest, CPU per broadcast, reads deferred, the stamp-to-read delay p99, the frames'
latency (kernel stamp minus publish stamp) p50/p99 beside the target's ground truth
(its write time minus the stamp, ``/admin/stats/delivery``), and frames lost or out of
order (``seq`` per connection). The cyclic collector is off once connected (its pauses
are the heap's, not the reads'). This process runs below the target (``SCHED_IDLE``,
unless ``--no-idle``) on the shared core, so the target's fan-out lands as N ready
sockets at once. 127.0.0.1 only; bounded by rounds * 2 * window + ~15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import sys
import time
from array import array
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench import procs
from bench.table import Table
from bench.target import WS_MARKET, TargetProcess
from loadsvc.users import arrival, readturns
from loadsvc.users.wsconn import ArrivalBacklog, TimedConnection, stamped_connect

LIMITS_MS = (2.0, 5.0, 10.0)


class Frames:
    """What the connections received: latencies (s), and per connection the last ``seq``."""

    def __init__(self) -> None:
        self.latency = array("d")
        self.frames = 0
        self.gaps = 0  # a seq skipped (lost) on a connection
        self.reorders = 0  # a seq at or below the previous one

    def hook(self) -> Any:
        """An ``on_frame`` for one connection: parse, time, check the sequence."""
        last = [0]

        def on_frame(payload: Any, arrived: float) -> None:
            doc = json.loads(payload)
            self.frames += 1
            seq = doc.get("seq")
            if seq is not None:  # a data frame: what the target's ground truth records
                self.latency.append(arrived - doc["published_at"])
                if last[0] and seq <= last[0]:
                    self.reorders += 1
                elif last[0] and seq != last[0] + 1:
                    self.gaps += 1
                last[0] = seq

        return on_frame


class Turns:
    """Each turn of the loop in this thread's CPU time (a task that yields every turn)."""

    def __init__(self) -> None:
        self.cpu = array("d")

    async def spin(self) -> None:
        """Yield at every turn; record each turn's CPU."""
        clock = time.thread_time
        c0 = clock()
        while True:
            await asyncio.sleep(0)
            c = clock()
            self.cpu.append(c - c0)
            c0 = c


def _q(values: array[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank), None over no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


async def window(
    target: TargetProcess, turns: Turns, frames: Frames, budget_s: float | None, seconds: float
) -> dict[str, Any]:
    """One window with ``budget_s`` (None: no budget); its figures."""
    loop = asyncio.get_running_loop()
    readturns.set_budget(budget_s)
    await asyncio.sleep(1.0)  # the other mode's queue drained, this one's in force
    target.reset_delivery()  # a blocking call: before the window's figures start
    rt, backlog = readturns.ReadTurns.of(loop), ArrivalBacklog.of(loop)
    left0, drains0, shared0 = rt.left, rt.drains, backlog.frames_sharing_a_read
    frames.latency, frames.frames, frames.gaps, frames.reorders = array("d"), 0, 0, 0
    arrival.take_read_delays()
    backlog.take_shared_waits()
    turns.cpu = array("d")
    t0, cpu0 = time.monotonic(), time.process_time()
    await asyncio.sleep(seconds)
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    cpu_turns, delays = turns.cpu, arrival.take_read_delays()
    per_min = 60.0 / wall
    truth = _truth(target.delivery())
    out: dict[str, Any] = {
        "mode": "none" if budget_s is None else f"{budget_s * 1000:g} ms",
        "turns": len(cpu_turns),
        "max_ms": max(cpu_turns, default=0.0) * 1000,
        "left_per_s": (rt.left - left0) / wall,
        "drains_per_min": (rt.drains - drains0) * per_min,
        "read_delay_p99_ms": _ms(_q(delays, 0.99)),
        "shared": backlog.frames_sharing_a_read - shared0,
        "shared_wait_max_ms": max(backlog.take_shared_waits(), default=0.0) * 1000,
        "frames": frames.frames,
        "cpu_us_per_frame": cpu / max(1, frames.frames) * 1e6,
        "gaps": frames.gaps,
        "reorders": frames.reorders,
        "p50_ms": _ms(_q(frames.latency, 0.5)),
        "p99_ms": _ms(_q(frames.latency, 0.99)),
        "truth_p50_ms": truth.get("p50_ms"),
        "truth_p99_ms": truth.get("p99_ms"),
        "truth_buffered": truth.get("buffered"),
    }
    for q in ("p50", "p99"):  # a gap only where both sides have data: never over nothing
        if out[f"truth_{q}_ms"] is not None and out[f"{q}_ms"] is not None:
            out[f"gap_{q}_ms"] = out[f"{q}_ms"] - out[f"truth_{q}_ms"]
    for limit in LIMITS_MS:
        out[f"over_{limit:g}"] = sum(1 for c in cpu_turns if c * 1000 > limit) * per_min
    return out


def _truth(doc: dict[str, Any]) -> dict[str, Any]:
    """The ground truth of /ws/market in the target's delivery document."""
    for key, value in doc.items():
        if isinstance(value, dict):
            if key == WS_MARKET:
                return value
            found = _truth(value)
            if found:
                return found
    return {}


async def connect_clients(url: str, count: int, frames: Frames) -> list[Any]:
    """``count`` loadsvc WS clients on ``url``, 100 at a time, each frame timed into ``frames``."""
    conns: list[Any] = []
    for i in range(0, count, 100):
        conns += await asyncio.gather(
            *(
                stamped_connect(
                    url,
                    compression=None,
                    proxy=None,
                    max_queue=64,
                    create_connection=TimedConnection.factory(frames.hook()),
                )
                for _ in range(min(100, count - i))
            )
        )
    return conns


async def measure(args: argparse.Namespace, target: TargetProcess) -> list[dict[str, Any]]:
    """Open the connections, alternate the two modes, close."""
    frames, turns = Frames(), Turns()
    url = f"ws://127.0.0.1:{target.port}{WS_MARKET}"
    conns = await connect_clients(url, args.connections, frames)
    kernel = sum(arrival.clock_of(c.transport) == "kernel" for c in conns)
    # No collector pauses in the turns (their length depends on the heap, not the mode;
    # loadsvc schedules its own, loadsvc.collector): what is measured is the loop's work.
    gc.freeze()
    gc.disable()
    # --no-spin: no turns timed, and the process's CPU per frame is the reads' and judging's
    # own (the spinner would fill every idle moment of the loop).
    spinner = asyncio.get_running_loop().create_task(
        turns.spin() if args.spin else asyncio.sleep(0)
    )
    await asyncio.sleep(2.0)
    budget = args.budget_ms / 1000
    results = []
    try:
        for r in range(args.rounds):
            order = (None, budget) if r % 2 == 0 else (budget, None)
            for b in order:
                results.append(await window(target, turns, frames, b, args.window))
                results[-1]["kernel_conns"] = kernel
                print(json.dumps(results[-1]), flush=True)
    finally:
        gc.enable()  # as it was (a test runs this in its own process)
        gc.unfreeze()
        spinner.cancel()
        for c in conns:
            c.transport.abort()
        await asyncio.sleep(0.5)
    return results


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    """Medians per mode over the rounds."""
    modes = list(dict.fromkeys(r["mode"] for r in results))
    keys = [] if args.spin else [("cpu_us_per_frame", "process CPU per frame (us)", "{:.1f}")]
    keys += [
        ("over_10", "turns > 10 ms CPU / min", "{:.1f}"),
        ("over_5", "turns > 5 ms / min", "{:.1f}"),
        ("over_2", "turns > 2 ms / min", "{:.1f}"),
        ("max_ms", "longest turn (ms CPU)", "{:.1f}"),
        ("left_per_s", "reads left to a later turn / s", "{:.0f}"),
        ("drains_per_min", "turns reading the queue / min", "{:.0f}"),
        ("read_delay_p99_ms", "stamp-to-read delay p99 (ms)", "{:.1f}"),
        ("shared", "frames sharing a read", "{:.0f}"),
        ("shared_wait_max_ms", "their longest wait (ms)", "{:.1f}"),
        ("p50_ms", "latency p50 (ms)", "{:.2f}"),
        ("truth_p50_ms", "target's truth p50 (ms)", "{:.2f}"),
        ("p99_ms", "latency p99 (ms)", "{:.2f}"),
        ("truth_p99_ms", "target's truth p99 (ms)", "{:.2f}"),
        ("gap_p50_ms", "gap to the truth p50 (ms)", "{:+.2f}"),
        ("gap_p99_ms", "gap to the truth p99 (ms)", "{:+.2f}"),
        ("truth_buffered", "writes the target found buffered", "{:.0f}"),
        ("gaps", "seq gaps / reorders", "{:.0f}"),
        ("frames", "frames a window", "{:.0f}"),
    ]
    if not args.spin:  # no turns were timed
        keys = [k for k in keys if not k[0].startswith(("over_", "max_"))]
    rows = []
    for key, name, fmt in keys:
        cells = [name]
        for m in modes:
            vals = [r[key] for r in results if r["mode"] == m and r.get(key) is not None]
            cell = fmt.format(statistics.median(vals)) if vals else "-"
            if key == "gaps":
                cell += " / " + str(sum(r["reorders"] for r in results if r["mode"] == m))
            cells.append(cell)
        rows.append(cells)
    return Table(
        f"{args.connections} WS connections, {args.rounds} rounds of {args.window:g} s a mode "
        "(medians)",
        ["", *(f"budget {m}" for m in modes)],
        rows,
    )


def main() -> None:
    """Start the target, alternate the modes, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=500)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--window", type=float, default=20.0)
    p.add_argument("--budget-ms", type=float, default=readturns.BUDGET_S * 1000)
    p.add_argument(
        "--no-idle",
        dest="idle",
        action="store_false",
        help="run at the target's priority (on one core, reads interleave with its fan-out)",
    )
    p.add_argument(
        "--no-spin",
        dest="spin",
        action="store_false",
        help="no turn timing: measure the process's CPU per frame instead",
    )
    args = p.parse_args()
    if not arrival.SUPPORTED:
        sys.exit("this platform does not stamp TCP reads: nothing is deferred")
    core = min(os.sched_getaffinity(0))
    log = Path(f"/tmp/read_turns.{os.getpid()}.log")
    target = TargetProcess(core, log)
    if args.idle:
        # Below the target on the shared core: its fan-out to every connection finishes before
        # this process reads, so a broadcast is ~N sockets ready in one poll, as it is when the
        # target has a core of its own and the generator's loop is busy for a few ms.
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(procs.NOFILE, hard), hard))
    try:
        results = uvloop.run(measure(args, target))
    finally:
        procs.stop(target.proc)
    print(table(results, args).text())


if __name__ == "__main__":
    main()
