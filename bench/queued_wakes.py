"""Queued sockets woken every turn, or taken off the poll: does a generator that fell behind catch up? Paired.

``python bench/queued_wakes.py [--connections 2000] [--passes 4] [--window 15] [--stall-ms 1000]
[--other-load 0.6]``

A reference target (a child process on one core) publishes ``/ws/market`` to N WS
connections that this process holds on uvloop on the other core, the way ``loadsvc
run`` holds them (``stamped_connect``, ``TimedConnection``, kernel receive stamps,
the read budget of :mod:`loadsvc.users.readturns`; each frame parsed and timed).
Windows alternate ``set_unpoll_after(None)`` (a queued socket stays on the poll and
is woken every turn until the queue reads it: the behaviour before) with the default
(off the poll past ``BREAK_EVEN`` wake-ups), the order reversed every other pass,
over the same connections. Each window starts behind: the loop is held ``--stall-ms``
(a collector pause, a restart's storm of endings), so a broadcast or more lands
while nothing reads, then runs ``--window`` seconds. Beside the connections, the
generator's other work (other users, pacing, metrics) takes ``--other-load`` of the
core: a timer every 5 ms that burns that share of it, so what is left for the reads is
what a busy generator has. Per window: this process's CPU per frame (the other
work's CPU not counted), wake-ups of queued sockets per second, sockets taken off the poll per
second, the share of 50 ms samples with sockets queued in the window's second half, how
long until the stall's backlog was read (the first sample with nothing queued once
sockets were),
the stamp-to-read delay p99, the frames' latency beside the target's ground truth,
and frames lost or out of order. A window is **stuck** when sockets were queued in
at least 90 % of its second half's samples: the generator did not catch up. The
cyclic collector is off once connected. 127.0.0.1 only; bounded by
passes * 2 * (window + 2) s + the connecting.
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
from bench.read_turns import Frames, _ms, _q, _truth, connect_clients
from bench.table import Table
from bench.target import WS_MARKET, TargetProcess
from loadsvc.users import arrival, readturns

STUCK_SHARE = 0.9  # queued in this share of the second half's samples: stuck behind
SAMPLE_S = 0.05
OTHER_EVERY_S = 0.005  # the other work's period
MODES = {"never (before)": None, "break-even": "break-even"}


def _caught_up(queued: list[tuple[float, int]], window_s: float) -> float:
    """When the stall's backlog was read: the first sample with nothing queued after the
    first with sockets queued (the loop queues them only once it polls again); the
    window's length if never."""
    first = next((i for i, (_, n) in enumerate(queued) if n), None)
    if first is None:
        return 0.0
    return next((at for at, n in queued[first:] if not n), window_s)


class OtherWork:
    """The generator's other work: ``share`` of the core, in bursts every OTHER_EVERY_S."""

    def __init__(self, loop: asyncio.AbstractEventLoop, share: float) -> None:
        self._loop = loop
        self._burst_s = share * OTHER_EVERY_S
        self.cpu = 0.0  # thread CPU burnt so far
        self._handle: asyncio.TimerHandle | None = None
        if share > 0:
            self._handle = loop.call_later(OTHER_EVERY_S, self._burn)

    def _burn(self) -> None:
        clock = time.thread_time
        c0 = clock()
        while clock() - c0 < self._burst_s:
            pass
        self.cpu += clock() - c0
        self._handle = self._loop.call_later(OTHER_EVERY_S, self._burn)

    def stop(self) -> None:
        """No more bursts."""
        if self._handle is not None:
            self._handle.cancel()


async def window(
    target: TargetProcess, frames: Frames, other: OtherWork, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One window of ``mode`` (a key of MODES), started behind; its figures."""
    loop = asyncio.get_running_loop()
    readturns.set_unpoll_after(MODES[mode])
    await asyncio.sleep(1.0)
    target.reset_delivery()  # a blocking call: before the window's figures start
    rt = readturns.ReadTurns.of(loop)
    frames.latency, frames.frames, frames.gaps, frames.reorders = array("d"), 0, 0, 0
    arrival.take_read_delays()
    wakes0, unpolled0, left0 = rt.wakes, rt.unpolled, rt.left
    t0, cpu0, other0 = time.monotonic(), time.process_time(), other.cpu
    end = time.perf_counter() + args.stall_ms / 1000
    while time.perf_counter() < end:  # held: nothing read, the next broadcast lands
        pass
    queued: list[tuple[float, int]] = []  # (seconds into the window, sockets queued)
    while (now := time.monotonic() - t0) < args.window:
        queued.append((now, len(rt)))
        await asyncio.sleep(SAMPLE_S)
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0 - (other.cpu - other0)
    late = [n for at, n in queued if at >= args.window / 2]
    behind_share = sum(1 for n in late if n) / max(1, len(late))
    truth = _truth(target.delivery())
    out: dict[str, Any] = {
        "mode": mode,
        "cpu_us_per_frame": cpu / max(1, frames.frames) * 1e6,
        "cpu_share": cpu / wall,
        "wakes_per_s": (rt.wakes - wakes0) / wall,
        "unpolled_per_s": (rt.unpolled - unpolled0) / wall,
        "left_per_s": (rt.left - left0) / wall,
        "behind_share": behind_share,
        "queued_max": max((n for _, n in queued), default=0),
        "caught_up_s": _caught_up(queued, args.window),
        "stuck": behind_share >= STUCK_SHARE,
        "read_delay_p99_ms": _ms(_q(arrival.take_read_delays(), 0.99)),
        "frames_per_s": frames.frames / wall,
        "gaps": frames.gaps,
        "reorders": frames.reorders,
        "p99_ms": _ms(_q(frames.latency, 0.99)),
        "truth_p99_ms": truth.get("p99_ms"),
    }
    if out["p99_ms"] is not None and out["truth_p99_ms"] is not None:
        out["gap_p99_ms"] = out["p99_ms"] - out["truth_p99_ms"]
    return out


async def measure(args: argparse.Namespace, target: TargetProcess) -> list[dict[str, Any]]:
    """Open the connections, alternate the modes over the passes, close."""
    frames = Frames()
    url = f"ws://127.0.0.1:{target.port}{WS_MARKET}"
    conns = await connect_clients(url, args.connections, frames)
    kernel = sum(arrival.clock_of(c.transport) == "kernel" for c in conns)
    gc.freeze()
    gc.disable()
    other = OtherWork(asyncio.get_running_loop(), args.other_load)
    await asyncio.sleep(2.0)
    results = []
    try:
        for p in range(args.passes):
            order = list(MODES) if p % 2 == 0 else list(reversed(MODES))
            for mode in order:
                results.append(await window(target, frames, other, mode, args))
                results[-1]["kernel_conns"] = kernel
                results[-1]["pass"] = p
                print(json.dumps(results[-1]), flush=True)
    finally:
        other.stop()
        readturns.set_unpoll_after()
        gc.enable()
        gc.unfreeze()
        for c in conns:
            c.transport.abort()
        await asyncio.sleep(0.5)
    return results


def _range(vals: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``vals``."""
    if not vals:
        return "-"
    med = fmt.format(statistics.median(vals))
    return f"{med} ({fmt.format(min(vals))}-{fmt.format(max(vals))})"


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    """Per mode: medians (min-max) over the windows, and the windows stuck behind."""
    keys = [
        ("cpu_us_per_frame", "CPU per frame (us)", "{:.0f}"),
        ("cpu_share", "CPU / wall (beside the other work)", "{:.2f}"),
        ("wakes_per_s", "wake-ups while queued / s", "{:.0f}"),
        ("unpolled_per_s", "taken off the poll / s", "{:.1f}"),
        ("left_per_s", "reads left to a later turn / s", "{:.0f}"),
        ("behind_share", "2nd half with sockets queued", "{:.2f}"),
        ("queued_max", "most sockets queued", "{:.0f}"),
        ("caught_up_s", "stall's backlog read after (s)", "{:.2f}"),
        ("read_delay_p99_ms", "stamp-to-read delay p99 (ms)", "{:.0f}"),
        ("frames_per_s", "frames / s", "{:.0f}"),
        ("gap_p99_ms", "latency p99 - truth p99 (ms)", "{:+.1f}"),
    ]
    rows = []
    for key, name, fmt in keys:
        cells = [name]
        for m in MODES:
            cells.append(
                _range([r[key] for r in results if r["mode"] == m and r.get(key) is not None], fmt)
            )
        rows.append(cells)
    rows.append(
        ["windows stuck behind"]
        + [
            f"{sum(r['stuck'] for r in results if r['mode'] == m)} of "
            f"{sum(r['mode'] == m for r in results)}"
            for m in MODES
        ]
    )
    rows.append(
        ["seq gaps / reorders"]
        + [
            f"{sum(r['gaps'] for r in results if r['mode'] == m)} / "
            f"{sum(r['reorders'] for r in results if r['mode'] == m)}"
            for m in MODES
        ]
    )
    return Table(
        f"{args.connections} WS connections on uvloop, {args.passes} passes of {args.window:g} s "
        f"a mode, each started {args.stall_ms:g} ms behind, other work {args.other_load:.0%} "
        "of the core (median (min-max))",
        ["queued sockets off the poll", *MODES],
        rows,
        note=f"stuck: sockets queued in >= {STUCK_SHARE:.0%} of the {SAMPLE_S * 1000:g} ms "
        "samples of a window's second half",
    )


def main() -> None:
    """Start the target, alternate the modes, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--passes", type=int, default=4)
    p.add_argument("--window", type=float, default=15.0)
    p.add_argument("--stall-ms", type=float, default=1000.0)
    p.add_argument("--other-load", type=float, default=0.6)
    args = p.parse_args()
    if not arrival.SUPPORTED:
        sys.exit("this platform does not stamp TCP reads: nothing is queued")
    target_core, own_core = procs.cores()
    target = TargetProcess(target_core, Path(f"/tmp/queued_wakes.{os.getpid()}.log"))
    os.sched_setaffinity(0, {own_core})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(procs.NOFILE, hard), hard))
    try:
        results = uvloop.run(measure(args, target))
    finally:
        procs.stop(target.proc)
    table(results, args).print_both()


if __name__ == "__main__":
    main()
