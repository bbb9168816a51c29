"""loadsvc.gil: the switch interval a loadsvc process runs with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from loadsvc.gil import SWITCH_INTERVAL_S

ROOT = Path(__file__).resolve().parent.parent


def test_a_loadsvc_loop_runs_with_the_short_switch_interval() -> None:
    """What runs a loadsvc loop (``run``, ``serve``) sets the interval before the load: the
    loop's thread waits at most half a millisecond behind a helper thread's Python."""
    script = (
        "import asyncio, sys\n"
        "from loadsvc.cli import _run_async\n"
        "async def read():\n"
        "    return sys.getswitchinterval()\n"
        "print(sys.getswitchinterval(), _run_async(read))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    before, during = map(float, done.stdout.split())
    assert before == 0.005  # the interpreter's default, until the loop starts
    assert during == SWITCH_INTERVAL_S == 0.0005
