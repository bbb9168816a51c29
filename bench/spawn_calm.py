"""Does spawning disturb timing? ``python bench/spawn_calm.py [--passes 3] [--window 2,12]``

Issue 22 item 3: connecting at the seed's 100/s beside 2,000 open connections must
not raise the loop lag p99 beyond what the open connections alone cause. Each trial
is a fresh reference target on one core and loadsvc (``bench/clients/loadsvc_gen.py``,
what ``loadsvc run`` drives) alone on the other, the seed's ``/ws/market`` stream:

- ``2,000 open``: 2,000 connections opened at 1,000/s, then held;
- ``2,000 + 100/s``: the same 2,000, then 100 more every second through the warm-up
  and the window (so 2,000 + 100 x (ramp detection + warm-up) at the mark, and 1,000
  more by its end), each tick's 100 started spread over the tick, each made when its
  start is due, at most ``loadsvc.spawning.PER_TURN`` a loop turn (the runner's way);
- ``2,000 + 100/s burst``: the same, each tick's 100 made and started in one turn (the
  runner before the spread, ``BENCH_SPAWN=burst``: no spread, no per-turn budget);
- ``N open``: as many held as the spawning trial has at the *end* of its window, so
  what its open connections alone cause is bounded from above.

Conditions alternate within a pass (the order reversed on every other pass), so the
shared machine's load falls on each alike. Each row: the window's loop lag p99 (the
verdict's own figure, 50 ms samples), the connections at the end, frames per
generator CPU-second, and how much of either core other processes took.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import tools
from bench.scenarios import MAX_DURATION, REQUIRED_WS_KEYS
from bench.table import Table
from bench.target import WS_MARKET
from bench.trial import Child, Environment, TrialSpec

OPEN = 2000
FAST_RATE = 1000  # how the 2,000 are opened (as bench/ws_arrival.py)
SPAWN_RATE = 100  # the seed's spawn rate


def _scenario(shape: str) -> str:
    return f"""\
version: 1
scenarios:
  bench_ws:
    shape: {shape}
    users:
      - kind: ws_stream
        path: /ws/market
        message:
          required_keys: {REQUIRED_WS_KEYS}
          skip_types: [status]
          timestamp_field: published_at
          sequence_field: seq
"""


def _constant(n: int) -> str:
    return f"{{kind: constant, users: {n}, duration: {MAX_DURATION}, spawn_rate: {FAST_RATE}}}"


def _spawning(seconds: float) -> str:
    """2,000 at 1,000/s, then 100 more a second for ``seconds``, then held."""
    more = round(SPAWN_RATE * seconds)
    return (
        f"{{kind: ramping, stages: [{{duration: {OPEN / FAST_RATE:g}s, target: {OPEN}}}, "
        f"{{duration: {seconds:g}s, target: {OPEN + more}}}, "
        f"{{duration: {MAX_DURATION}, target: {OPEN + more}}}]}}"
    )


SPAWNING = {"spawn": "spread", "burst": "burst"}  # condition: the runner's BENCH_SPAWN


def trial(
    env: Environment, condition: str, held: int, warmup: float, window: float, gc: str = "on"
) -> dict[str, Any]:
    """One trial of ``condition``: ``open`` (``held`` connections), ``spawn`` or ``burst``."""
    if condition in SPAWNING:
        # Spawning from 2,000 on, long enough to cover ramp detection, warm-up and window.
        shape = _spawning(warmup + window + 10)
        label = f"{OPEN:,} + {SPAWN_RATE}/s" + (" burst" if condition == "burst" else "")
    else:
        shape, label = _constant(held), f"{held:,} open"
    name = f"spawn-{condition}-{held}"
    config = tools._config(env.workdir, name, _scenario(shape))
    child = tools._loadsvc(config, "bench_ws")
    spawning = SPAWNING.get(condition, "spread")
    generator = Child(
        child.name, child.command, {**child.env, "BENCH_SPAWN": spawning, "BENCH_GC": gc}
    )
    ramped_at = OPEN if condition in SPAWNING else held
    spec = TrialSpec(
        name,
        generator,
        lambda target: target.connections() >= ramped_at,
        warmup,
        window,
        ramp_timeout_s=30 + held / FAST_RATE * 3,
    )
    m = env.run(spec)
    result = m.result or {}
    (endpoint,) = result.get("endpoints") or [{}]
    frames = endpoint.get("count") or 0
    return {
        "condition": condition,
        "label": label,
        "lag_p99_ms": result.get("loop_lag_p99_ms"),
        "connections_end": int(m.stats_end["connections"][WS_MARKET]),
        "connects": endpoint.get("connects"),
        "frames_per_cpu_s": frames / m.cpu_s if m.cpu_s > 0 else None,
        "gen_cpu": m.cpu_s / m.wall_s if m.wall_s else None,
        "other_load": m.other_load,
        "result": result.get("result"),
        # The kernel rule (loadsvc.lag): frames that shared a read make the generator busy,
        # and the read delay is what it may then excuse.
        "shared": result.get("frames_sharing_a_read"),
        "excuse_ms": result.get("read_delay_ms"),
        "gc_max_ms": result.get("gc_max_ms"),
        "gc_full": result.get("gc_full"),
    }


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(rows: list[dict[str, Any]], when: str) -> Table:
    """Every trial, then the median per condition."""
    body = [
        [
            r["label"] + (" *" if r["other_load"] > 0.1 else ""),
            _ms(r["lag_p99_ms"]),
            "-" if r["connections_end"] is None else f"{r['connections_end']:,}",
            "-" if r["connects"] is None else f"{r['connects']:,}",
            "-" if r["frames_per_cpu_s"] is None else f"{r['frames_per_cpu_s']:,.0f}",
            "-" if r["gen_cpu"] is None else f"{r['gen_cpu']:.0%}",
            f"{r['other_load']:.0%}",
            _ms(r["gc_max_ms"]),
            "-" if r["gc_full"] is None else str(r["gc_full"]),
            "-" if r["shared"] is None else f"{r['shared']:,}",
            _ms(r["excuse_ms"]),
            str(r["result"]),
        ]
        for r in rows
    ]
    by: dict[str, list[float]] = {}
    for r in rows:
        if r["lag_p99_ms"] is not None:
            by.setdefault(r["label"], []).append(r["lag_p99_ms"])
    for label, lags in by.items():
        body.append([f"median of {label}", _ms(statistics.median(lags)), *[""] * 10])
    return Table(
        f"Loop lag p99 with {OPEN:,} open WS connections, alone and while connecting "
        f"{SPAWN_RATE}/s more, {when}",
        [
            "condition",
            "loop lag p99 ms",
            "open at end",
            "connects in window",
            "frames / CPU-s",
            "gen CPU",
            "others' load",
            "longest GC ms",
            "full GCs",
            "frames sharing a read",
            "excuse ms",
            "verdict",
        ],
        body,
        note=(
            "loop lag p99: the verdict window's (50 ms samples, the window only, not the ramp). "
            "The N-open condition holds what the spawning trial has open at the end of its "
            "window: what those connections alone cause. GC: the cyclic collector's longest "
            "pause and its full collections in the window. * processes outside the trial took "
            "more than 10 % of a core in the window (the machine is shared). Frames sharing a "
            "read make the generator busy under the kernel rule (loadsvc.lag); excuse: the "
            "read delay it may then take off a breach."
        ),
    )


def main() -> None:
    """Alternate the conditions; print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--window", default="2,12", help="warm-up,window seconds")
    p.add_argument(
        "--gc",
        choices=("on", "off", "calm", "freeze"),
        default="on",
        help="off: the generator's cyclic collector disabled, to see the spawning's own cost; "
        "calm: start-up's heap frozen first, as `loadsvc run` does; freeze: an experiment, "
        "what survives frozen every second",
    )
    p.add_argument(
        "--conditions",
        default="open,burst,spawn,open-end",
        help="which of open (2,000), burst, spawn, open-end (the spawning trial's end) to run",
    )
    args = p.parse_args()
    warmup, window = (float(x) for x in args.window.split(","))
    # Ramp detection is about 1 s after the 2,000 are open: the spawning trial's end count.
    end = OPEN + round(SPAWN_RATE * (1 + warmup + window) / 100) * 100
    every = {"open": ("open", OPEN), "burst": ("burst", OPEN), "spawn": ("spawn", OPEN)}
    every["open-end"] = ("open", end)
    conditions = [every[c] for c in args.conditions.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="spawn_calm.") as tmp:
        env = Environment(Path(tmp))
        for k in range(args.passes):
            for condition, held in conditions if k % 2 == 0 else conditions[::-1]:
                try:
                    rows.append(trial(env, condition, held, warmup, window, args.gc))
                except (OSError, RuntimeError) as exc:  # a starved target: say so, go on
                    print(f"{condition} {held}: trial failed ({exc!r})", flush=True)
                    continue
                print(" | ".join(table(rows[-1:], "").rows[0]), flush=True)
    order = {"open": 0, "burst": 1, "spawn": 2}
    rows.sort(key=lambda r: (order[r["condition"]], r["label"]))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    gc_note = {
        "on": "",
        "off": ", the collector off",
        "calm": ", start-up heap frozen",
        "freeze": ", survivors frozen every second",
    }
    print(table(rows, when + gc_note[args.gc]).text())


if __name__ == "__main__":
    main()
