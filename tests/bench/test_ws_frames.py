"""``bench/ws_frames.py`` runs (its frames are timed, not skewed) and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from bench.ws_frames import distinct, market_frames

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
    assert set(layers) == {"sink", "reader", "connection", "backlog", "stamped"}, done.stdout
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


def test_distinct_frames_are_each_connections_own_of_one_length() -> None:
    """--distinct: every connection's frame is valid JSON with its own user field, all of one
    length (what the connections' memo of decoded frames must read whole to tell apart)."""
    ((frame, _),) = market_frames(1, 1.0e9)
    each = distinct(frame, 50)
    assert len(set(each)) == 50 and len({len(x) for x in each}) == 1
    docs = [orjson.loads(x) for x in each]
    assert [d["user"] for d in docs[:2]] == ["u0000000", "u0000001"]
    assert all(d["seq"] == 1 for d in docs)
    done = subprocess.run(
        [sys.executable, "bench/ws_frames.py", "--frames", "100", "--repeats", "1",
         "--connections", "3", "--layers", "reader,backlog", "--distinct"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sum(ln.startswith("| reader") or ln.startswith("| backlog") for ln in
               done.stdout.splitlines()) == 2, done.stdout  # fmt: skip
