"""``bench/idle_cost.py``: a trial with the target silent delivers no frame, one publishing does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.idle_cost import SILENT_THROTTLE_S

ROOT = Path(__file__).resolve().parents[2]


def trial(throttle_s: float) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "bench/idle_cost.py", "--one", "4", "1.5", str(throttle_s)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_idle_is_silent_and_streaming_is_not() -> None:
    """The split rests on the idle trial getting no frame at all, and the streaming one
    getting the seed's: 4 connections for 1.5 s, each measured over its window."""
    idle, streaming = trial(SILENT_THROTTLE_S), trial(0.5)
    assert idle["frames"] == 0, idle
    assert streaming["frames"] >= 4, streaming  # ~1.8 frames a second per connection
    assert idle["cpu_s"] > 0 and streaming["cpu_s"] > 0
    assert 1.4 <= idle["wall_s"] <= 3.0 and 1.4 <= streaming["wall_s"] <= 3.0
