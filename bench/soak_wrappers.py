"""Which script wraps ``loadsvc serve`` in the soak: ``--garbage``, ``--memory``, ``--pauses``
or ``--turns`` (the last one given wins), or none (``python -m loadsvc``)."""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).parent


def serve_runner(args: argparse.Namespace, out: Path, warmup: float) -> list[str]:
    """The interpreter arguments that run serve: ``-m loadsvc``, or a wrapper script with its
    own options, writing under ``out``, then ``--`` before loadsvc's arguments."""
    # --garbage: under bench/soak_garbage.py, which counts what the collector finds.
    runner = ["-m", "loadsvc"]
    if args.garbage:
        runner = [str(HERE / "soak_garbage.py")]
        runner += ["--out", str(out / "garbage.jsonl"), "--every", str(args.garbage_every)]
        runner += ["--"]
    if args.memory:  # under bench/soak_memory.py: each allocator's view, every 2 s
        runner = [str(HERE / "soak_memory.py")]
        runner += ["--out", str(out / "memory.jsonl"), "--every", "2"]
        runner += ["--tracemalloc-at", args.tracemalloc_at, "--census-at", args.census_at, "--"]
    if args.pauses:  # under bench/soak_pauses.py: survivors frozen or not, alternating
        runner = [str(HERE / "soak_pauses.py")]
        runner += ["--out", str(out / "pauses.jsonl"), "--period", str(args.pauses)]
        runner += ["--settle", str(warmup), "--"]
    if args.turns:  # under bench/soak_turns.py: every long turn of the loop, attributed
        runner = [
            str(HERE / "soak_turns.py"),
            "--out",
            str(out / "turns.jsonl"),
        ]
        runner += ["--"]
    return runner
