"""The real Prometheus, Alertmanager, promtool and amtool: run them, or skip when not installed.

The starters are :mod:`loadsvc.localstack`'s (the demo's), on a free port with
their own directory; every process is stopped by its PID when the ``with``
block ends.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from loadsvc.localstack import (
    ALERTMANAGER,
    PROMETHEUS,
    Process,
    free_port,
    start_alertmanager,
    start_prometheus,
)
from tests.support.processes import ROOT
from tests.support.timing import scaled

_PACKAGES = {
    PROMETHEUS: "prometheus",
    "promtool": "prometheus",
    ALERTMANAGER: "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
}


def find_tool(name: str) -> str | None:
    """``name`` on PATH, or among this interpreter's scripts (pip-installed tools in a venv)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sysconfig.get_path("scripts")) / name
    return str(candidate) if candidate.exists() else None


def require(binary: str) -> str:
    """The path of ``binary``; skips the test when it is not installed."""
    found = find_tool(binary)
    if found is None:
        package = _PACKAGES.get(binary, binary)
        pytest.skip(f"{binary} is not installed (Debian: {package})")
    return found


def run_tool(
    args: Sequence[str],
    cwd: Path = ROOT,
    timeout: float = 60,
    stdin: str | None = None,
    niceness: int = 0,
) -> str:
    """Run a real binary (skip if not installed); fail with its output if it fails. Its output.

    ``niceness`` > 0 runs it at that lower CPU priority: a long check whose result does not
    depend on time (promtool's unit tests) then takes only the CPU the other tests leave idle.
    """
    binary = require(args[0])
    nice = [require("nice"), "-n", str(niceness)] if niceness else []  # coreutils' nice(1)
    proc = subprocess.run(
        [*nice, binary, *args[1:]],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{output}"
    return output


@contextlib.contextmanager
def _stopped_after(proc: Process) -> Iterator[Process]:
    try:
        yield proc
    finally:
        proc.stop()


def prometheus(config: dict[str, Any], workdir: Path) -> contextlib.AbstractContextManager[Process]:
    """Real Prometheus with ``config`` on a free loopback port (skips if not installed)."""
    require(PROMETHEUS)
    return _stopped_after(start_prometheus(config, workdir, free_port()))


def alertmanager(config_path: Path, workdir: Path) -> contextlib.AbstractContextManager[Process]:
    """Real Alertmanager with ``config_path``, no cluster, on a free port (skips if missing)."""
    require(ALERTMANAGER)
    return _stopped_after(start_alertmanager(config_path, workdir, free_port()))
