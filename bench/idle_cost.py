"""What holding WS connections costs, with frames and without: the fixed part of a frame's cost.

``python bench/idle_cost.py [--connections 2000] [--window 40] [--pairs 2] [--compare A,B]``

loadsvc holds N connections to the bench target's /ws/market for a window after the
ramp, twice: the target publishing as the seed does ("streaming"), and publishing
nothing ("idle": the throttle of every symbol longer than the run). The generator's CPU
over the window (all threads, /proc schedstat) is split into what the connections cost
held idle, and what their frames add, per frame. The window is 40 s so that it holds
two rounds of keepalive pings (one every 20 s per connection, websockets' default).

With ``--compare``, each checkout (a directory: this repository, a ``git worktree`` of an
older commit) runs the same trials with its own harness and generator, alternating.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: this repository importable, after PYTHONPATH
    sys.path.append(str(ROOT))  # (a compared checkout's own bench and loadsvc come first)
SILENT_THROTTLE_S = 1e6  # no symbol is published twice in the run: no frames at all


def one(connections: int, window_s: float, throttle_s: float) -> dict[str, float]:
    """One trial with the checkout on ``sys.path``: CPU seconds, wall seconds, frames."""
    from bench import procs, tools
    from bench.trial import Environment, TrialSpec
    from bench.ws import _connected

    cores = procs.cores()
    os.sched_setaffinity(0, {cores[0]})  # the harness stays off the generator's core
    with tempfile.TemporaryDirectory() as tmp:
        env = Environment(Path(tmp), cores)
        spec = TrialSpec(
            f"idle-{connections}",
            tools.loadsvc_ws(Path(tmp), connections, 1000),
            functools.partial(_connected, connections),
            3.0,
            window_s,
            ramp_timeout_s=60 + connections / 100,
        )
        m = env.run(spec, throttle_s=throttle_s)
    (endpoint,) = (m.result or {}).get("endpoints") or [{}]
    return {"cpu_s": m.cpu_s, "wall_s": m.wall_s, "frames": endpoint.get("count") or 0}


def _trial(
    checkout: Path, connections: int, window_s: float, throttle_s: float
) -> dict[str, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", str(connections)]
    out = subprocess.run(
        [*command, str(window_s), str(throttle_s)],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--window", type=float, default=40.0, help="measured seconds per trial")
    p.add_argument("--pairs", type=int, default=2, help="idle and streaming trials per checkout")
    p.add_argument("--compare", help="checkouts to alternate, comma-separated (default: this)")
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        n, window, throttle = args.one
        print(json.dumps(one(int(n), float(window), float(throttle))))
        return 0
    checkouts = [Path(c).resolve() for c in args.compare.split(",")] if args.compare else [ROOT]
    print(
        "| checkout | pair | idle % of a core | streaming % of a core | frames/s "
        "| us a frame, all | us a frame, less idle |\n|:--|--:|--:|--:|--:|--:|--:|"
    )
    for pair in range(1, args.pairs + 1):
        for checkout in checkouts:
            idle = _trial(checkout, args.connections, args.window, SILENT_THROTTLE_S)
            busy = _trial(checkout, args.connections, args.window, 0.5)
            idle_share = idle["cpu_s"] / idle["wall_s"]
            busy_share = busy["cpu_s"] / busy["wall_s"]
            rate = busy["frames"] / busy["wall_s"]
            per_frame = 1e6 * busy_share / rate if rate else float("nan")
            marginal = 1e6 * (busy_share - idle_share) / rate if rate else float("nan")
            print(
                f"| {checkout.name} | {pair} | {100 * idle_share:.2f} | {100 * busy_share:.2f} "
                f"| {rate:,.0f} | {per_frame:.1f} | {marginal:.1f} |",
                flush=True,
            )
    print(
        f"\n{args.connections:,} connections, {args.window:.0f} s windows after the ramp and 3 s "
        "of warm-up; idle: the target publishes nothing."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
