"""``bench/ws_frames.py`` runs (its frames are timed, not skewed) and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ws_frames_prints_a_row_per_layer() -> None:
    """A tiny pass over every layer: one row each, with a positive cost per frame."""
    done = subprocess.run(
        [sys.executable, "bench/ws_frames.py", "--frames", "200", "--repeats", "1",
         "--connections", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [ln.split("|")[1:-1] for ln in done.stdout.splitlines() if ln.startswith("| ")]
    layers = {r[0].strip(): float(r[2].split()[0]) for r in rows[1:]}
    assert set(layers) == {"sink", "reader", "connection", "backlog"}, done.stdout
    assert all(cost > 0 for cost in layers.values()), layers


def test_ws_frames_compare_names_what_each_checkout_compiled() -> None:
    """--compare runs each checkout in a child and says which of its modules were compiled."""
    done = subprocess.run(
        [sys.executable, "bench/ws_frames.py", "--frames", "100", "--repeats", "1",
         "--connections", "2", "--layers", "sink,backlog", "--compare", str(ROOT)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [ln.split("|")[1:-1] for ln in done.stdout.splitlines() if ln.startswith("| ")]
    assert [r[0].strip() for r in rows[1:]] == ["sink", "backlog"], done.stdout
    # A source checkout: nothing compiled (a mypyc_spike.py copy lists its extension modules).
    assert f"{ROOT}: compiled none" in done.stdout.splitlines(), done.stdout
