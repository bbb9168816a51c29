"""loadsvc runs against misbehaving servers: in this process, or the CLI as a child with its peak RSS."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.config.spec import ScenarioSpec
from loadsvc.loopmon import LoopLagMonitor
from loadsvc.metrics import Metrics, create_metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.users import Target
from tests.support.processes import ROOT
from tests.support.timing import scaled

FAST = RunOptions(tick_s=0.1, seed=1)  # reconcile every 100 ms; a fixed seed


@dataclass
class CliRun:
    """A finished ``loadsvc run``: exit code, summary JSON, peak RSS and wall time."""

    returncode: int
    summary: dict[str, Any]
    peak_rss_mb: float
    elapsed_s: float
    stderr: str

    def outcomes(self) -> dict[str, int]:
        """The outcome counts of the run's only endpoint."""
        (endpoint,) = self.summary["endpoints"]
        counts: dict[str, int] = endpoint["outcomes"]
        return {k: v for k, v in counts.items() if v}


# Runs loadsvc's CLI and, at exit, writes the process's VmHWM (its own peak RSS since
# exec; ru_maxrss would include the test process's size at fork) to $LOADSVC_TEST_HWM.
_CLI_REPORTING_PEAK_RSS = """
import atexit, os, runpy, sys

def _report():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["LOADSVC_TEST_HWM"], "w") as out:
        out.write(kib)

atexit.register(_report)
runpy.run_module("loadsvc", run_name="__main__", alter_sys=True)
"""


def run_cli(config: str, scenario: str, target: str, timeout_s: float = 60) -> CliRun:
    """``loadsvc run`` as a child process (stopped by its PID if it hangs), with its peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        config_file, summary_file = Path(tmp) / "c.yaml", Path(tmp) / "summary.json"
        config_file.write_text(config)
        err_file, hwm_file = Path(tmp) / "stderr", Path(tmp) / "hwm"
        args = [sys.executable, "-c", _CLI_REPORTING_PEAK_RSS, "--log-json", "run", scenario,
                "--config", str(config_file), "--target", target,
                "--summary-json", str(summary_file), "--tick", "0.1"]  # fmt: skip
        env = {**os.environ, "LOADSVC_TEST_HWM": str(hwm_file)}
        started = time.monotonic()
        with err_file.open("w") as err:
            proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        elapsed = time.monotonic() - started
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        peak_mb = int(hwm_file.read_text()) / 1024 if hwm_file.exists() else float("inf")
        return CliRun(proc.returncode, summary, peak_mb, elapsed, err_file.read_text())


def rest_config(users: int = 2, duration: str = "1s", user_extra: str = "") -> str:
    """A scenario ``s`` of REST users that each make exactly one request (then think for
    longer than the run), so a run's outcome counts are exact: one per user."""
    return f"""\
version: 1
scenarios:
  s:
    shape: {{kind: constant, users: {users}, duration: {duration}}}
    graceful_stop: 300ms
    users:
      - kind: rest
        think_time: {{min: 60s, max: 60s}}
        timeout: 3s
{user_extra}        tasks:
          - {{path: /api/x, required_keys: [a]}}
"""


async def run_bounded(
    spec: ScenarioSpec,
    target: Target,
    metrics: Metrics | None = None,
    monitor: LoopLagMonitor | None = None,
) -> RunResult:
    """Run ``spec`` in this process against ``target`` (a fresh registry unless ``metrics``);
    the run must end by itself within a generous bound."""
    recorder = Recorder(metrics or create_metrics(CollectorRegistry()))
    run = ScenarioRun(spec, target, recorder, FAST, monitor)
    return await asyncio.wait_for(run.execute(), scaled(20))


async def run_rest(url: str, config: str, tls: ssl.SSLContext | None = None) -> RunResult:
    """Run scenario ``s`` of ``config`` in this process against ``url``."""
    spec = parse_config(config, "adversarial.yaml").scenario("s")
    return await run_bounded(spec, Target(url, tls=tls))


def outcomes(result: RunResult) -> dict[str, int]:
    """The non-zero outcome counts of the run's only endpoint."""
    (endpoint,) = result.endpoints
    return {k: v for k, v in endpoint.outcomes if v}
