"""The loop's lag behind a helper thread running Python, by switch interval:
``python bench/switch_interval.py [--intervals 0.005,0.001,0.0005] [--rounds 5]``.

``serve`` judges each verdict window in a thread (and reloads its configuration, counts its
sockets), so that the loop that times frames is not held for the whole of it; but Python in
that thread holds the GIL, and the loop's thread, which lets go of it at every system call,
waits for it to be handed back for up to the switch interval (:mod:`loadsvc.gil`). Here, on
one core (``--core``; the loop's, as ``serve`` has one): a uvloop loop, mostly idle as
``serve``'s is, writes and reads a socket pair every 2 ms and probes its own lag every 10 ms
(``time.perf_counter``), while a thread runs ``--burst-ms`` of Python every ``--every-ms``.
Rounds alternate the intervals (paired: the machine's load falls on each alike); per
interval, the medians over rounds of the probe's lag p50, p99 and worst during the bursts,
its p99 between them, and the bursts' wall time (what a smaller interval costs the thread).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import uvloop

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import Table


def burn(cpu_s: float) -> None:
    """Pure Python for ``cpu_s`` of this thread's CPU time."""
    end = time.thread_time() + cpu_s
    x = 0
    while time.thread_time() < end:
        for i in range(200):
            x += i * i


def nearest_rank_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3 if ordered else float("nan")


async def one_round(interval: float, seconds: float, burst_s: float, every_s: float) -> list[float]:
    """[lag p50, p99, worst during bursts, p99 between them, burst wall] in ms."""
    sys.setswitchinterval(interval)
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    stop, bursting = threading.Event(), threading.Event()
    walls: list[float] = []

    def helper() -> None:
        while not stop.wait(every_s):
            bursting.set()
            started = time.monotonic()
            burn(burst_s)
            walls.append(time.monotonic() - started)
            bursting.clear()

    during: list[float] = []
    between: list[float] = []

    async def probe() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            lag = time.perf_counter() - started - 0.01
            (during if bursting.is_set() else between).append(lag)

    async def io() -> None:
        while not stop.is_set():
            a.send(b"x" * 512)
            await asyncio.sleep(0.002)
            with contextlib.suppress(BlockingIOError):
                b.recv(4096)

    thread = threading.Thread(target=helper, daemon=True)
    thread.start()
    tasks = [asyncio.create_task(probe()), asyncio.create_task(io())]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    thread.join()
    a.close()
    b.close()
    return [
        nearest_rank_ms(during, 0.5),
        nearest_rank_ms(during, 0.99),
        nearest_rank_ms(during, 1.0),
        nearest_rank_ms(between, 0.99),
        statistics.median(walls) * 1e3 if walls else float("nan"),
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--intervals", default="0.005,0.001,0.0005")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--burst-ms", type=float, default=40.0)
    p.add_argument("--every-ms", type=float, default=300.0)
    p.add_argument("--core", type=int, default=None, help="pin to this core (default: the last)")
    args = p.parse_args(argv)
    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    intervals = [float(x) for x in args.intervals.split(",")]
    results: dict[float, list[list[float]]] = {i: [] for i in intervals}
    for _ in range(args.rounds):
        for interval in intervals:
            burst, every = args.burst_ms / 1e3, args.every_ms / 1e3
            results[interval].append(uvloop.run(one_round(interval, args.seconds, burst, every)))
    rows = []
    for interval in intervals:
        medians = [statistics.median(r[k] for r in results[interval]) for k in range(5)]
        rows.append(
            [f"{interval * 1e3:g}", *(f"{m:.2f}" for m in medians[:4]), f"{medians[4]:.1f}"]
        )
    print(
        Table(
            f"Loop lag behind a thread running {args.burst_ms:g} ms of Python every "
            f"{args.every_ms:g} ms, core {core} (medians of {args.rounds} rounds; ms)",
            ["switch interval (ms)", "lag p50 in bursts", "p99", "worst", "p99 between",
             "burst wall"],
            rows,
        ).text()
    )  # fmt: skip


if __name__ == "__main__":
    main()
