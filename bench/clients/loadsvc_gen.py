"""loadsvc as a bench generator: the engine's in-process API, stepped by the harness.

``python bench/clients/loadsvc_gen.py CONTROL_DIR NAME URL CONFIG SCENARIO``

It is what ``loadsvc run`` does (uvloop, the metric contract on a registry, the
loop-lag monitor, one ``ScenarioRun``), plus the harness's steps: the run starts
on ``go``, ``mark`` closes a verdict window (so the summary covers the measured
window only, not the ramp), ``stop`` closes the measured one, whose summary is the
result (the graceful stop after it is not in it).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path

import uvloop
from prometheus_client import CollectorRegistry

from bench.control import Control
from loadsvc.collector import calm_collector
from loadsvc.config import parse_config
from loadsvc.logs import configure_logging
from loadsvc.loopmon import LoopLagMonitor
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.report import summary_doc
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.spawning import PER_TURN
from loadsvc.tls import client_context
from loadsvc.users import arrival
from loadsvc.users.arrival import StampedTransport
from loadsvc.users.base import Target
from loadsvc.users.wsconn import ArrivalBacklog


class Collections:
    """The cyclic collector's pauses (``gc.callbacks``): what a collection cost the loop."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def summary(self) -> dict[str, float | int]:
        """The longest pause, the sum (ms), and the full collections since the last reset."""
        spent = [s for _, s in self.pauses]
        return {
            "gc_max_ms": max(spent, default=0.0) * 1e3,
            "gc_total_ms": sum(spent) * 1e3,
            "gc_full": sum(1 for g, _ in self.pauses if g == 2),
        }


async def _freeze_every(interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        gc.freeze()


async def drive(ctl: Control, url: str, config_file: Path, scenario: str) -> None:
    """Set up, then run the scenario between the harness's ``go`` and ``stop``."""
    config = parse_config(config_file.read_text(), str(config_file))
    metrics = create_metrics(CollectorRegistry(), config.latency_boundaries())
    recorder = Recorder(metrics)
    monitor = LoopLagMonitor(recorder)
    monitor.start()
    # bench/spawn_calm.py compares starts spread over each tick (and paced, loadsvc.spawning)
    # with the old burst: every start of a tick made in its first turn.
    burst = os.environ.get("BENCH_SPAWN", "spread") == "burst"
    options = RunOptions(spread_starts=not burst, per_turn=None if burst else PER_TURN)
    # bench/ws_arrival.py --tls: the target behind a TLS proxy whose certificate this CA issued.
    ca_file = os.environ.get("BENCH_CA_FILE")
    target = Target(url, tls=client_context(ca_file) if ca_file else None)
    run = ScenarioRun(config.scenario(scenario), target, recorder, options, monitor=monitor)
    ctl.ready()
    await ctl.wait("go")
    execution = asyncio.get_running_loop().create_task(run.execute())
    if os.environ.get("BENCH_GC") == "freeze":
        # An experiment (bench/spawn_calm.py --gc freeze), not what loadsvc does: what survives
        # is frozen every second, so a full collection walks one second's objects, not the
        # whole heap. Cyclic garbage frozen with it is never freed: a leak in a long run.
        freezer = asyncio.get_running_loop().create_task(_freeze_every(1.0))
    await ctl.wait("mark")
    await run.roll_window()
    collections = Collections()
    gc.callbacks.append(collections)
    backlog = ArrivalBacklog.of(asyncio.get_running_loop())
    shared_before = backlog.frames_sharing_a_read
    unstamped_before = StampedTransport.unstamped_in_process
    await ctl.wait("stop")
    # The window ends at stop, as the target's truth does: not after the graceful stop,
    # while thousands of connections close and frames published meanwhile wait.
    window = await run.roll_window()
    gc.callbacks.remove(collections)
    shared = backlog.frames_sharing_a_read - shared_before
    unstamped = StampedTransport.unstamped_in_process - unstamped_before
    run.stop()
    after_stop = await execution
    if os.environ.get("BENCH_GC") == "freeze":
        freezer.cancel()
    await monitor.stop()
    doc = summary_doc(window, url)
    (tail,) = summary_doc(after_stop, url)["endpoints"] or [{}]
    ctl.write_result(
        {
            **doc,
            # Frames of the window timed by a later frame's arrival (bench/ws_arrival.py),
            # and reads of kernel-clock connections that came without a stamp.
            "frames_sharing_a_read": shared,
            "unstamped_reads": unstamped,
            "after_stop_p99_ms": tail.get("p99_ms"),
            **collections.summary(),  # the window's collector pauses (bench/spawn_calm.py)
        }
    )


def main(argv: list[str]) -> None:
    """Entry point."""
    control_dir, name, url, config_file, scenario = argv
    configure_logging(json=True, level="warning")
    # bench/ws_arrival.py compares the clocks: "loop" times arrivals as before the kernel's.
    arrival.use_kernel_clock(os.environ.get("BENCH_ARRIVAL_CLOCK", "kernel") != "loop")
    if os.environ.get("BENCH_GC") == "off":
        # bench/spawn_calm.py --gc off: the loop's own cost without the collector's pauses.
        gc.disable()
    elif os.environ.get("BENCH_GC") == "calm":
        calm_collector()  # as `loadsvc run` does: start-up's heap frozen
    uvloop.run(drive(Control(control_dir, name), url, Path(config_file), scenario))


if __name__ == "__main__":
    main(sys.argv[1:])
