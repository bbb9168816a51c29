"""Hostile ``kind: python`` classes: a module that exits at import, a class that raises in
``__init__`` or ``run``, returns at once, never stops when cancelled, or declares an endpoint it
never uses; the run ends in bounded time, and no endpoint without data passes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadsvc.config import ConfigError, load_config
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.target.testing import RunningTarget
from loadsvc.users import Target
from tests.support.processes import ROOT
from tests.support.timing import scaled

HEADER = "from loadsvc.users.python import PythonUser, http\n\n"
SNAPSHOT = "/api/market/snapshot"


def write(tmp_path: Path, module: str, body: str) -> Path:
    """A config running ``module:User`` (written from ``body``) for 1.5 s, two users."""
    (tmp_path / f"{module}.py").write_text(HEADER + body)
    config = tmp_path / "c.yaml"
    config.write_text(
        "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 2, duration: 1500ms}\n"
        f"    graceful_stop: 300ms\n    users:\n      - {{kind: python, class: '{module}:User'}}\n"
    )
    return config


async def run(config: Path, url: str, metrics: Metrics) -> RunResult:
    """The run of ``config`` against ``url``; it must end within a generous bound."""
    spec = load_config(config).scenario("s")
    run = ScenarioRun(spec, Target(url), Recorder(metrics), RunOptions(tick_s=0.1, seed=1))
    return await asyncio.wait_for(run.execute(), scaled(20))


@pytest.mark.parametrize("exit_code", [0, 2])
def test_a_module_that_exits_at_import_is_a_config_error_not_a_verdict(
    exit_code: int, tmp_path: Path
) -> None:
    """A module calling ``sys.exit(0)`` at import (an argparse script without a main guard
    exits 2 the same way): a config error at ``class``, and ``loadsvc validate`` exits 2,
    never 0 ("valid", or "passed" for ``run``)."""
    config = write(tmp_path, f"exits{exit_code}", f"import sys\nsys.exit({exit_code})\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    ((path, message),) = [(i.path, i.message) for i in caught.value.issues]
    assert path == "scenarios.s.users[0].class"
    assert f"cannot import 'exits{exit_code}'" in message and "SystemExit" in message
    proc = subprocess.run(
        [sys.executable, "-m", "loadsvc", "validate", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=scaled(60),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr


async def test_a_class_that_raises_in_init_is_counted_out_not_a_crash_of_the_run(
    tmp_path: Path, target: RunningTarget, metrics: Metrics
) -> None:
    """``__init__`` raises: the run does not crash; it ends, its endpoint had no data, and
    it fails."""
    config = write(
        tmp_path,
        "init_raises",
        f"class User(PythonUser):\n    endpoints = (http({SNAPSHOT!r}),)\n\n"
        "    def __init__(self, *args, **kwargs):\n        raise RuntimeError('broken')\n\n"
        "    async def run(self):\n        pass\n",
    )
    result = await run(config, target.url, metrics)
    assert not result.passed
    assert ("http_latency", "no_data") in [(j.name, j.state) for j in result.verdict.breached()]


@pytest.mark.parametrize(
    "run_body",
    ["raise ValueError('run broke')", "return", "await self.sleep(0.01)"],
)
async def test_a_run_that_raises_or_returns_at_once_fails_as_no_data(
    run_body: str, tmp_path: Path, target: RunningTarget, metrics: Metrics
) -> None:
    """``run`` raises, or returns without measuring anything: no data, never a pass."""
    config = write(
        tmp_path,
        f"run_{abs(hash(run_body))}",
        f"class User(PythonUser):\n    endpoints = (http({SNAPSHOT!r}),)\n\n"
        f"    async def run(self):\n        {run_body}\n",
    )
    result = await run(config, target.url, metrics)
    assert not result.passed
    assert ("http_latency", "no_data") in [(j.name, j.state) for j in result.verdict.breached()]


async def test_an_endpoint_declared_but_never_used_fails_as_no_data(
    tmp_path: Path, target: RunningTarget, metrics: Metrics
) -> None:
    """Two endpoints declared, one measured: the unused one is no_data and fails the run."""
    config = write(
        tmp_path,
        "half_used",
        f"class User(PythonUser):\n    endpoints = (http({SNAPSHOT!r}), http('/api/unused'))\n\n"
        "    async def run(self):\n"
        "        async for started in self.pace(0.1):\n"
        f"            await self.request({SNAPSHOT!r}, {SNAPSHOT!r}, started=started)\n",
    )
    result = await run(config, target.url, metrics)
    counts = {e.endpoint: e.count for e in result.endpoints}
    assert counts[SNAPSHOT] > 5 and counts["/api/unused"] == 0
    assert not result.passed
    assert ("/api/unused", "no_data") in [(j.endpoint, j.state) for j in result.verdict.breached()]


async def test_a_user_that_ignores_cancellation_cannot_hold_the_run_open(
    tmp_path: Path, target: RunningTarget, metrics: Metrics
) -> None:
    """``run`` swallows every cancellation and loops: the run still ends (bounded after its
    graceful stop) and fails; it does not wait for the user for ever."""
    config = write(
        tmp_path,
        "stubborn",
        f"import asyncio\n\nclass User(PythonUser):\n    endpoints = (http({SNAPSHOT!r}),)\n\n"
        "    async def run(self):\n"
        "        while True:\n"
        "            try:\n"
        "                await asyncio.sleep(0.05)\n"
        "            except asyncio.CancelledError:\n"
        "                pass\n",
    )
    started = time.monotonic()
    result = await run(config, target.url, metrics)
    assert time.monotonic() - started < scaled(10)
    assert not result.passed
