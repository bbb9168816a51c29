"""Child processes pinned to a core, stopped by PID, and measured through /proc."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Shared with the demo and the tests: bench runs from the repository with loadsvc importable,
# never with the tests package, so the one copy lives in loadsvc.
from loadsvc.localstack import stop_process

ROOT = Path(__file__).resolve().parent.parent
NOFILE = 20_000  # 5,000 connections plus probes, pipes and the interpreter's own files
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cores() -> tuple[int, int]:
    """(target core, generator core): the first two CPUs this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise RuntimeError(f"the benchmark needs two cores, this process may use {allowed}")
    return allowed[0], allowed[1]


def _pin_and_raise_limits(core: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec
        os.sched_setaffinity(0, {core})
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    return setup


def spawn(
    args: Sequence[str], core: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` pinned to ``core`` with a raised open-file limit; output goes to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            preexec_fn=_pin_and_raise_limits(core),
        )


def python(script: str, *args: str) -> list[str]:
    """The command line that runs a bench script with this interpreter."""
    return [sys.executable, str(ROOT / "bench" / script), *args]


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM the process by its PID and wait; SIGKILL it if it will not go."""
    return stop_process(proc, timeout)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process (all its threads), in seconds.

    From each thread's schedstat (nanoseconds) where the kernel has it: /proc/PID/stat
    counts in clock ticks (10 ms), too coarse for a nearly idle generator over a second.
    """
    try:
        return (
            sum(
                int((task / "schedstat").read_text().split()[0])
                for task in Path(f"/proc/{pid}/task").iterdir()
            )
            / 1e9
        )
    except (OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


def core_busy_seconds(core: int) -> float:
    """CPU time the core spent on anything but idle and iowait since boot (from /proc/stat).

    Counted in clock ticks, so it differs from a process's precise CPU time by a few
    per cent: good for noticing another process on the core, not for more.
    """
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            user, nice, system, _, _, irq, softirq = (int(v) for v in line.split()[1:8])
            return (user + nice + system + irq + softirq) / _TICKS
    raise KeyError(f"cpu{core} not in /proc/stat")


@dataclass(frozen=True)
class Reading:
    """A process and its core, read at one moment."""

    cpu_s: float
    rss: int
    core_busy_s: float


def read(pid: int, core: int) -> Reading:
    """The process's CPU time and RSS, and its core's busy time, now."""
    return Reading(cpu_seconds(pid), rss_bytes(pid), core_busy_seconds(core))
