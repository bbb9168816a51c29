"""One trial: a fresh target, one generator (and perhaps a probe), one measured window.

The target and the probe run on one core, the generator alone on the other.
After the generator has ramped up and warmed up, the harness reads the
generator's CPU time and RSS and the target's counters, gives ``mark``, waits
the window, reads them again and gives ``stop``. Everything a row of the table
says comes from those two readings and from the processes' own results.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.control import Control
from bench.target import TargetProcess, wait_until

Ready = Callable[[TargetProcess], bool]
# A front before the target (a TLS proxy, bench/ws_arrival.py --tls): given the target and the
# trial's directory, it runs for the trial and yields the base URL the children are given.
Front = Callable[[TargetProcess, Path], AbstractContextManager[str]]


@dataclass(frozen=True)
class Child:
    """A process of the trial: its command line and whether it follows the control steps.

    In the command line ``{url}`` and ``{ws}`` stand for the target's http:// and ws://
    base URLs, ``{control}`` for the trial's control directory.
    """

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stepped: bool = True  # wrk is not: it starts at once and is stopped by PID


@dataclass(frozen=True)
class TrialSpec:
    """What to run and how long to measure."""

    label: str
    generator: Child
    ramped: Ready  # true once the generator runs at full size
    warmup_s: float
    measure_s: float
    probe: Child | None = None
    faults: dict[str, Any] | None = None
    ramp_timeout_s: float = 60.0


@dataclass
class Measurement:
    """What one trial measured."""

    label: str
    wall_s: float
    cpu_s: float  # the generator's CPU time in the window
    rss_base: int | None  # the generator's RSS once set up, before any load
    rss_end: int
    other_gen_core_s: float  # CPU time other processes took on the generator's core
    other_target_core_s: float  # ... on the target's core (not the target, probe or harness)
    served: int  # snapshot requests the target counted in the window
    stats_start: dict[str, Any]
    stats_end: dict[str, Any]
    result: dict[str, Any] | None  # the generator's own report
    probe: dict[str, Any] | None
    # Ground truth over the window: per WS path, when the target wrote each frame to each
    # connection minus its publish stamp (GET /admin/stats/delivery).
    truth: dict[str, Any] | None = None

    @property
    def served_per_cpu_s(self) -> float | None:
        """Requests the target served per generator CPU-second."""
        return self.served / self.cpu_s if self.cpu_s > 0 else None

    @property
    def other_load(self) -> float:
        """The larger share of either core that processes outside the trial used (disturbance)."""
        if self.wall_s <= 0:
            return 0.0
        return max(0.0, self.other_gen_core_s, self.other_target_core_s) / self.wall_s


@dataclass(frozen=True)
class _Snapshot:
    """Everything the harness reads at the start and at the end of the window."""

    at: float
    generator: procs.Reading
    target_side_cpu_s: float  # the target, the probe and this harness
    target_core_busy_s: float
    stats: dict[str, Any]


class Environment:
    """Where trials run: the two cores and a working directory for logs and control files."""

    def __init__(
        self, workdir: Path, cores: tuple[int, int] | None = None, front: Front | None = None
    ) -> None:
        self.workdir = workdir
        self.target_core, self.generator_core = cores or procs.cores()
        self.front = front  # the harness still reads the target's admin API directly
        workdir.mkdir(parents=True, exist_ok=True)

    def run(self, spec: TrialSpec, throttle_s: float = 0.5, tick_s: float = 0.1) -> Measurement:
        """Run one trial to the end; every process is stopped by PID whatever happens."""
        trial_dir = self.workdir / spec.label
        shutil.rmtree(trial_dir, ignore_errors=True)
        trial_dir.mkdir(parents=True)
        ctl = Control(trial_dir, "harness")
        log = trial_dir / "output.log"
        started: list[Any] = []
        with (
            TargetProcess(self.target_core, log, throttle_s, tick_s) as target,
            self._front(target, trial_dir) as url,
        ):
            try:
                if spec.faults:
                    target.set_faults(spec.faults)
                children = [c for c in (spec.probe, spec.generator) if c is not None]
                env = {"BENCH_CONTROL": str(trial_dir)}
                for child in children:
                    core = self.generator_core if child is spec.generator else self.target_core
                    command = [_fill(arg, url, trial_dir) for arg in child.command]
                    child_env = {**env, "BENCH_NAME": child.name, **child.env}
                    started.append(procs.spawn(command, core, log, child_env))
                gen = started[-1]
                stepped = [c.name for c in children if c.stepped]
                ctl.wait_ready(stepped, timeout=60.0)
                rss_base = procs.rss_bytes(gen.pid) if spec.generator.stepped else None
                ctl.give("go")
                wait_until(lambda: spec.ramped(target), spec.ramp_timeout_s, f"{spec.label} ramp")
                time.sleep(spec.warmup_s)
                target_side = [target.proc.pid, os.getpid(), *(p.pid for p in started[:-1])]
                before = self._snapshot(gen.pid, target_side, target)
                target.reset_delivery()
                ctl.give("mark")
                time.sleep(spec.measure_s)
                after = self._snapshot(gen.pid, target_side, target)
                truth = target.delivery()
                ctl.give("stop")
                wait = 30.0
                result = ctl.result(spec.generator.name, wait) if spec.generator.stepped else None
                probe = ctl.result(spec.probe.name, wait) if spec.probe else None
            finally:
                for proc in reversed(started):
                    procs.stop(proc)
        g0, g1 = before.generator, after.generator
        cpu = g1.cpu_s - g0.cpu_s
        target_side = after.target_side_cpu_s - before.target_side_cpu_s
        return Measurement(
            label=spec.label,
            wall_s=after.at - before.at,
            cpu_s=cpu,
            rss_base=rss_base,
            rss_end=g1.rss,
            other_gen_core_s=(g1.core_busy_s - g0.core_busy_s) - cpu,
            other_target_core_s=(after.target_core_busy_s - before.target_core_busy_s)
            - target_side,
            served=_served(after.stats) - _served(before.stats),
            stats_start=before.stats,
            stats_end=after.stats,
            result=result,
            probe=probe,
            truth=truth,
        )

    def _front(self, target: TargetProcess, trial_dir: Path) -> AbstractContextManager[str]:
        if self.front is None:
            return contextlib.nullcontext(target.url)
        return self.front(target, trial_dir)

    def _snapshot(self, gen_pid: int, target_side: list[int], target: TargetProcess) -> _Snapshot:
        return _Snapshot(
            at=time.monotonic(),
            generator=procs.read(gen_pid, self.generator_core),
            target_side_cpu_s=sum(procs.cpu_seconds(pid) for pid in target_side),
            target_core_busy_s=procs.core_busy_seconds(self.target_core),
            stats=target.stats(),
        )


def _fill(arg: str, url: str, trial_dir: Path) -> str:
    ws = url.replace("http", "ws", 1)  # http:// -> ws://, https:// -> wss://
    return arg.replace("{url}", url).replace("{ws}", ws).replace("{control}", str(trial_dir))


def _served(stats: dict[str, Any]) -> int:
    return int(stats["rest_requests"]["/api/market/snapshot"])
