"""Calm reconnects, measured: ``python bench/reconnect_calm.py [--clients 500] [--rounds 3]``.

Holds ``--clients`` loadsvc streaming clients (uvloop, in this process, one core) on the
reference target (another core) and kills and restarts the target ``--rounds`` times per
reconnect policy, the policies taking turns (a paired run: the machine's load falls on
each alike). For every restart: the time until every client is back, the event loop's
lag from the kill until one second after the last client returned (sampled as
``loadsvc serve`` samples it), and this process's CPU time per reconnect.

Policies, each adding to the one above: ``before`` (what loadsvc did until issue 20: jitter
over the upper half of the window, nothing paced, lost connections left to the cyclic
collector; rebuilt here for the comparison), ``calm, first pass`` (full jitter, the loop's
handshake pace, the cycle broken at teardown), ``+ endings in slices (calm)`` (transports'
endings torn down in slices, :mod:`loadsvc.users.endings`: loadsvc now) and ``+ collector
at (700, 3, 100) (not taken)`` (see :mod:`loadsvc.collector` for why). The collector's
pauses are timed too (``gc.callbacks``). The trust limit is :mod:`loadsvc.lag`'s, for the
seed's thresholds (10 ms).

``+ young on a clock, middle every 3rd`` (loadsvc now) and ``... every 10th`` also run
:class:`loadsvc.collector.YoungCollections` (from a second before the kill); ``+ middle
generation at (700, 3, 10)`` collects the middle generation three times as often instead
(not taken: in the steady state its median pause halved, not a third, and more of them were
over the limit, 65 against 47 in 5 minutes). A collection the clock's thread makes is not
in the loop's thread's CPU time, so not in the turn columns (the loop waits for the GIL
meanwhile); the GC columns have every collection.
``+ survivors frozen`` installs :class:`loadsvc.collector.FrozenSurvivors`.
Every turn starts with nothing frozen (in that row, the heap frozen, as if by the last full
collection), so ``--freeze`` (the heap frozen before the clients
connect, as at start-up) now shows only in the steady rows' figures. ``--turns`` also times every turn of the loop from each kill until
a second after recovery, by a task that yields at every turn (it keeps the loop busy: the
CPU and lag columns of such a run are not comparable with a run without it): the longest
turn in this thread's CPU time, the machine's other load taken out, and the turns over the
trust limit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

import loadsvc.users.ws as ws_module
from bench.restart_crowd import Crowd
from bench.table import Table
from loadsvc.collector import FrozenSurvivors, YoungCollections
from loadsvc.lag import trust_limit_of
from loadsvc.loopmon import INTERVAL_S
from loadsvc.users.arrival import StampedTransport
from loadsvc.users.backoff import BURST, HANDSHAKES_PER_S, ReconnectBackoff, pace_handshakes
from loadsvc.users.base import jittered

OUT = Path(__file__).resolve().parent / "results" / "reconnect_calm"
TRUST_LIMIT_S = trust_limit_of([0.1, 0.2])  # the seed's WS p99 and REST p95 limits


class _HalfJitterBackoff(ReconnectBackoff):
    """The backoff before issue 20: uniform over [window/2, window]."""

    def next_wait(self) -> float:
        wait = jittered(self._window, self._rng)
        self._window = min(self._window * self._spec.multiplier, self._spec.max_s)
        return wait


def _keep_cycles(ws: object) -> None:
    """What ``loadsvc.users.ws._release`` replaced: lost connections left to the collector."""


_SLICED = StampedTransport._schedule_lost


def _end_at_once(self: StampedTransport, exc: BaseException | None) -> None:
    """What the endings queue replaced: every ending torn down in the turn it was seen."""
    if not self._lost:
        self._lost = True
        self._loop.call_soon(self._connection_lost, exc)


@dataclass(frozen=True)
class Policy:
    """A way of coming back after a restart: what differs between the rows."""

    backoff: type[ReconnectBackoff]
    rate: float  # handshakes a second
    release: Callable[..., None]  # a lost connection's teardown
    ending: Callable[..., None]  # how a transport's ending is run
    thresholds: tuple[int, int, int]  # the cyclic collector's
    freeze_survivors: bool = False  # loadsvc.collector.FrozenSurvivors installed
    young_on_a_clock: tuple[float, int] | None = None  # YoungCollections(every_s, middle_every)


PYTHON_GC = (700, 10, 10)  # Python's own thresholds: loadsvc keeps them
TRIED_GC = (700, 3, 100)  # shorter pauses, but garbage waits longer: see loadsvc.collector
MIDDLE_GC = (700, 3, 10)  # the middle generation a third as large, full collections as before
POLICIES: dict[str, Policy] = {
    "before": Policy(_HalfJitterBackoff, 1e9, _keep_cycles, _end_at_once, PYTHON_GC),
    "calm, first pass": Policy(
        ReconnectBackoff, HANDSHAKES_PER_S, ws_module._release, _end_at_once, PYTHON_GC
    ),
    "+ endings in slices (calm)": Policy(
        ReconnectBackoff, HANDSHAKES_PER_S, ws_module._release, _SLICED, PYTHON_GC
    ),
    f"+ collector at {TRIED_GC} (not taken)": Policy(
        ReconnectBackoff, HANDSHAKES_PER_S, ws_module._release, _SLICED, TRIED_GC
    ),
    "+ survivors frozen": Policy(
        ReconnectBackoff, HANDSHAKES_PER_S, ws_module._release, _SLICED, PYTHON_GC, True
    ),
    f"+ middle generation at {MIDDLE_GC} (not taken)": Policy(
        ReconnectBackoff, HANDSHAKES_PER_S, ws_module._release, _SLICED, MIDDLE_GC, True
    ),
    "+ young on a clock, middle every 10th": Policy(
        ReconnectBackoff, HANDSHAKES_PER_S, ws_module._release, _SLICED, PYTHON_GC, True, (0.05, 10)
    ),
    "+ young on a clock, middle every 3rd": Policy(
        ReconnectBackoff, HANDSHAKES_PER_S, ws_module._release, _SLICED, PYTHON_GC, True, (0.05, 3)
    ),
}


class _Turns:
    """Every turn of the loop while ``on``, timed by a task that yields at each: the turns
    that took more than 0.5 ms of this thread's CPU time (when, CPU seconds)."""

    def __init__(self) -> None:
        self.at = array("d")
        self.cpu = array("d")  # arrays, not tuples: nothing for the collector to walk
        self.on = False

    async def run(self) -> None:
        wall, cpu = time.monotonic, time.thread_time
        w0, c0 = wall(), cpu()
        while True:
            await asyncio.sleep(0)
            w, c = wall(), cpu()
            if self.on and c - c0 > 0.0005:
                self.at.append(w0)
                self.cpu.append(c - c0)
            w0, c0 = w, c

    def between(self, start: float, end: float) -> list[float]:
        return [c for at, c in zip(self.at, self.cpu, strict=True) if start <= at <= end]


class _GcLog:
    """Pauses of the cyclic garbage collector, each with when it ended and its generation."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now = time.thread_time()  # CPU time: a descheduled process is no longer pause
        if phase == "start":
            self._started = now
        else:
            self.pauses.append((time.monotonic(), now - self._started, info["generation"]))

    def between(self, start: float, end: float, gens: Sequence[int] = (0, 1, 2)) -> list[float]:
        return [pause for at, pause, gen in self.pauses if start <= at <= end and gen in gens]


class _LagLog:
    """The loop's lag every 50 ms, as ``loadsvc serve`` samples it, and the part of it that
    the loop's own work accounts for (so a machine shared with others does not blur it).

    ``wall``: how late a 50 ms timer fired. ``cpu``: the CPU time this thread spent over
    that interval beyond the interval itself; time the process was not scheduled is not in
    it, so it is a lower bound of what the loop's own work made the timer late by.
    """

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (when, wall lag, cpu lag)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, cpu0 = loop.time() + INTERVAL_S, time.thread_time()
            await asyncio.sleep(INTERVAL_S)
            wall = max(0.0, loop.time() - due)
            cpu = max(0.0, time.thread_time() - cpu0 - INTERVAL_S)
            self.samples.append((time.monotonic(), wall, cpu))

    def between(self, start: float, end: float) -> tuple[list[float], list[float]]:
        inside = [(w, c) for at, w, c in self.samples if start <= at <= end]
        return [w for w, _ in inside], [c for _, c in inside]


def _full_collection_s(times: int = 5) -> float:
    """A full collection's CPU time with every client connected (median of ``times``):
    what one costs the loop when it comes, frozen start-up heap or not."""
    spent = []
    for _ in range(times):
        cpu0 = time.thread_time()
        gc.collect()
        spent.append(time.thread_time() - cpu0)
    return statistics.median(spent)


def p99(values: Sequence[float]) -> float:
    """The 99th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def measure(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Every policy's restarts, interleaved."""
    results: dict[str, list[dict[str, float]]] = {
        name: [] for name in POLICIES if any(o in name for o in args.only)
    }
    log = _LagLog()
    monitor = asyncio.create_task(log.run())
    collections = _GcLog()
    gc.callbacks.append(collections)
    survivors = FrozenSurvivors()
    turns = _Turns()
    spinner = asyncio.create_task(turns.run()) if args.turns else None
    if args.freeze:  # what calm_collector does at start-up besides the thresholds
        gc.collect()
        gc.freeze()
    try:
        async with Crowd(args.clients, args.out) as crowd:
            await asyncio.sleep(2.0)  # settle after the first connects
            quiet_start = time.monotonic()
            await asyncio.sleep(3.0)
            quiet, quiet_cpu = log.between(quiet_start, time.monotonic())
            results["(steady, no restart)"] = [
                {
                    "lag_p99_ms": p99(quiet) * 1e3,
                    "lag_max_ms": max(quiet) * 1e3,
                    "cpu_lag_p99_ms": p99(quiet_cpu) * 1e3,
                    "cpu_lag_max_ms": max(quiet_cpu) * 1e3,
                }
            ]
            chosen = {n: p for n, p in POLICIES.items() if any(o in n for o in args.only)}
            for _ in range(args.rounds):
                for name, policy in chosen.items():
                    setattr(ws_module, "ReconnectBackoff", policy.backoff)  # noqa: B010
                    ws_module._release = policy.release
                    setattr(StampedTransport, "_schedule_lost", policy.ending)  # noqa: B010
                    gc.set_threshold(*policy.thresholds)
                    pace_handshakes(policy.rate, BURST)
                    # Nothing frozen but, in the frozen-survivors turn, the heap (as if the
                    # last full collection's survivors had been); the collector's schedule is
                    # left alone, so full collections fall where they would.
                    if survivors in gc.callbacks:
                        gc.callbacks.remove(survivors)
                    gc.unfreeze()
                    if policy.freeze_survivors:
                        gc.freeze()
                        gc.callbacks.append(survivors)
                    young = None
                    if policy.young_on_a_clock:  # running before the kill, as it would be
                        young = YoungCollections(*policy.young_on_a_clock).start()
                        await asyncio.sleep(1.0)
                    kill_at, cpu0 = time.monotonic(), time.process_time()
                    turns.on = True
                    recovery = await crowd.restart(args.down)
                    cpu = time.process_time() - cpu0
                    await asyncio.sleep(1.0)
                    turns.on = False
                    if young is not None:
                        young.stop()
                    long_turns = turns.between(kill_at, time.monotonic())
                    lags, cpu_lags = log.between(kill_at, time.monotonic())
                    pauses = collections.between(kill_at, time.monotonic())
                    results[name].append(
                        {
                            "recovery_s": float("nan") if recovery is None else recovery,
                            "lag_p99_ms": p99(lags) * 1e3,
                            "lag_max_ms": max(lags) * 1e3,
                            "over_limit": sum(lag > TRUST_LIMIT_S for lag in lags),
                            "cpu_lag_p99_ms": p99(cpu_lags) * 1e3,
                            "cpu_lag_max_ms": max(cpu_lags) * 1e3,
                            "samples": len(lags),
                            "cpu_ms_per_client": cpu * 1e3 / args.clients,
                            "gc_ms": sum(pauses) * 1e3,
                            "gc_max_ms": max(pauses, default=0.0) * 1e3,
                            "gc_p99_ms": p99(pauses) * 1e3 if pauses else 0.0,
                            "gen1_max_ms": max(
                                collections.between(kill_at, time.monotonic(), (1,)), default=0.0
                            )
                            * 1e3,
                            "full_gc_max_ms": max(
                                collections.between(kill_at, time.monotonic(), (2,)), default=0.0
                            )
                            * 1e3,
                            **(
                                {
                                    "turn_max_ms": max(long_turns, default=0.0) * 1e3,
                                    "turns_over": sum(t > TRUST_LIMIT_S for t in long_turns),
                                }
                                if args.turns
                                else {}
                            ),
                        }
                    )
                    await asyncio.sleep(2.0)  # settle before the next policy's turn
            if survivors in gc.callbacks:
                gc.callbacks.remove(survivors)
            gc.unfreeze()
            results["(steady, no restart)"][0]["full_gc_max_ms"] = _full_collection_s() * 1e3
            gc.callbacks.append(survivors)
            gc.collect()  # its survivors frozen: what the next full collection walks is new
            frozen = _full_collection_s() * 1e3
            results["(steady, survivors frozen)"] = [{"full_gc_max_ms": frozen}]
    finally:
        if survivors in gc.callbacks:
            gc.callbacks.remove(survivors)
        setattr(ws_module, "ReconnectBackoff", ReconnectBackoff)  # noqa: B010
        ws_module._release = POLICIES["+ endings in slices (calm)"].release
        gc.set_threshold(*PYTHON_GC)
        setattr(StampedTransport, "_schedule_lost", _SLICED)  # noqa: B010
        if spinner is not None:
            spinner.cancel()
        gc.callbacks.remove(collections)
        monitor.cancel()
    return results


def table(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> Table:
    """One row per policy: medians over its restarts, worst in brackets."""

    def cell(rows: list[dict[str, float]], key: str, fmt: Callable[[float], str]) -> str:
        values = [r[key] for r in rows if key in r]
        if not values:
            return "-"
        return f"{fmt(statistics.median(values))} ({fmt(max(values))})"

    rows = []
    for name, runs in results.items():
        rows.append(
            [
                name,
                cell(runs, "recovery_s", lambda v: f"{v:.2f}"),
                cell(runs, "lag_p99_ms", lambda v: f"{v:.1f}"),
                cell(runs, "lag_max_ms", lambda v: f"{v:.0f}"),
                cell(runs, "over_limit", lambda v: f"{v:.0f}"),
                cell(runs, "cpu_lag_p99_ms", lambda v: f"{v:.1f}"),
                cell(runs, "cpu_lag_max_ms", lambda v: f"{v:.0f}"),
                cell(runs, "cpu_ms_per_client", lambda v: f"{v:.2f}"),
                cell(runs, "gc_ms", lambda v: f"{v:.0f}"),
                cell(runs, "gc_max_ms", lambda v: f"{v:.0f}"),
                cell(runs, "gc_p99_ms", lambda v: f"{v:.1f}"),
                cell(runs, "gen1_max_ms", lambda v: f"{v:.1f}"),
                cell(runs, "full_gc_max_ms", lambda v: f"{v:.0f}"),
                cell(runs, "turn_max_ms", lambda v: f"{v:.1f}"),
                cell(runs, "turns_over", lambda v: f"{v:.0f}"),
            ]
        )
    return Table(
        f"Reconnects after a target restart: {args.clients} clients, target down {args.down:g} s, "
        f"{args.rounds} restarts per policy, median (worst)"
        + (", heap frozen at start-up" if args.freeze else ""),
        [
            "policy",
            "all back (s)",
            "lag p99 (ms)",
            "lag max (ms)",
            f"samples > {TRUST_LIMIT_S * 1e3:g} ms",
            "own lag p99 (ms)",
            "own lag max (ms)",
            "CPU ms / client",
            "GC CPU ms",
            "GC max (ms)",
            "GC p99 (ms)",
            "middle gen. max (ms)",
            "full GC max (ms)",
            "longest turn, CPU (ms)",
            f"turns > {TRUST_LIMIT_S * 1e3:g} ms",
        ],
        rows,
        note=f"calm = full jitter + {HANDSHAKES_PER_S:g} handshakes/s per loop (burst {BURST}) "
        "+ endings torn down in slices; "
        "lag sampled every 50 ms from the kill to 1 s after the last client returned; "
        "own lag: the part the loop's own CPU time accounts for (the machine's other load "
        "taken out); GC in CPU time; "
        "steady rows' full GC: one with every client connected, nothing frozen / the "
        "survivors of the last frozen.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the paired comparison and print the table (also to ``--out``/reconnect_calm.md)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--down", type=float, default=1.0, help="seconds the target stays down")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--freeze", action="store_true", help="freeze the heap at start-up, as loadsvc")
    p.add_argument("--turns", action="store_true", help="time every turn of the loop (see above)")
    p.add_argument(
        "--only",
        action="append",
        default=None,
        help="run only the policies whose name holds this text (repeatable; default all)",
    )
    args = p.parse_args(argv)
    args.only = args.only or [""]
    results = uvloop.run(measure(args))
    shown = table(results, args)
    print(shown.text())
    name = "reconnect_calm" + ("_frozen" if args.freeze else "") + ("_turns" if args.turns else "")
    (args.out / f"{name}.md").write_text(shown.markdown() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
