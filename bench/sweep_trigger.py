"""When to sweep, replayed: ``python bench/sweep_trigger.py SOAK.json [...]``.

The frozen survivors' sweep (:mod:`loadsvc.collector`) walks the whole heap: 100-200 ms of the
loop at the seed's full size. It is due once the live heap at full collections' ends has grown
past a bound since the last sweep; this replays the readings a soak recorded (``soak.json``'s
``cycle_ends``: the heap at the end of the last full collection, read every cycle, and how many
full collections there had been) through two triggers, and counts the sweeps each would start:

- ``one reading``: what loadsvc did until this bench: a reading over the heap the last sweep
  left by :data:`~loadsvc.collector.SWEEP_GROWTH`;
- ``floor``: :class:`loadsvc.sweeps.HeapFloor`: the floor of the readings over a trailing
  window against the floor of the first window after the sweep (``--window``: one or more
  lengths in seconds; the soak's readings are its own, so what a window means there depends on
  the soak's load periods: the accelerated soak's burst comes every 32 s, the full size's every
  7 minutes).

Each trigger is replayed on the readings as they were (the swing of the load alone) and with a
leak of frozen cycles added (``--leak``: per cent of the first reading per minute), which every
sweep frees and (``floor``) measures, setting when the next is due by time as the hook does
(from the share of the heap it freed; the hook counts objects, this replay blocks): the table shows the sweeps and the largest pile of leaked blocks any reading held,
in per cent of the median reading (the bound the trigger keeps). The sweep a trigger starts is
the next full collection, whose reading is then the heap with the leak freed. Only readings the
soak saw count: a cycle in which several full collections ran shows the last of them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import Table
from loadsvc.collector import SWEEP_EVERY_S, SWEEP_SOONEST_S
from loadsvc.sweeps import SWEEP_GROWTH, SWEEP_WINDOW_S, HeapFloor

Reading = tuple[float, int]  # seconds into the run, live heap blocks at a full collection's end
Trigger = Callable[[float, int], bool]  # a reading in; True: sweep at the next full collection


def readings(path: Path, repeat: int = 1) -> list[Reading]:
    """The heap at full collections' ends a soak recorded: one per cycle with a new one; the
    series played ``repeat`` times in a row (the same load for longer), every other time
    backwards, so that no jump joins two plays (a soak's heap climbs in its first minutes)."""
    ends = json.loads(path.read_text())["cycle_ends"]
    out: list[Reading] = []
    seen = 0.0
    for end in ends:
        full = float(end.get("full_gcs", 0.0))
        if full > seen and end.get("heap_gc_blocks"):
            out.append((float(end["t_s"]), int(end["heap_gc_blocks"])))
        seen = full
    if len(out) < 2:
        return out
    gap = (out[-1][0] - out[0][0]) / (len(out) - 1)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(out)] + [gap]
    played: list[Reading] = []
    now = out[0][0]
    for k in range(repeat):
        order = range(len(out)) if k % 2 == 0 else range(len(out) - 1, -1, -1)
        for i in order:
            played.append((now, out[i][1]))
            now += gaps[i if k % 2 == 0 else i - 1]
    return played


class OneReading:
    """The trigger before: a reading over the heap the last sweep left by ``growth``."""

    def __init__(self, growth: float = SWEEP_GROWTH) -> None:
        self.growth = growth
        self.at_sweep: int | None = None

    def restart(self, now: float, blocks: int) -> None:
        """A sweep ended with ``blocks`` live."""
        self.at_sweep = blocks

    def due_s(self, elapsed_s: float, share: float) -> float:
        """When the next sweep is due by time: the hour."""
        return SWEEP_EVERY_S

    def __call__(self, now: float, blocks: int) -> bool:
        return self.at_sweep is not None and blocks > self.at_sweep * (1.0 + self.growth)


class Floor:
    """:class:`HeapFloor`, restarted by each sweep with its reading, as the hook does."""

    def __init__(self, window_s: float) -> None:
        self.floor = HeapFloor(window_s)

    def restart(self, now: float, blocks: int) -> None:
        """A sweep ended with ``blocks`` live."""
        self.floor.restart(now)
        self.floor.read(now, blocks)

    def __call__(self, now: float, blocks: int) -> bool:
        return self.floor.read(now, blocks)

    def due_s(self, elapsed_s: float, share: float) -> float:
        """When the next sweep is due by time, as FrozenSurvivors sets it from the share of
        the heap the sweep freed, piled up over ``elapsed_s``."""
        if not share:
            return SWEEP_EVERY_S
        return min(SWEEP_EVERY_S, max(SWEEP_SOONEST_S, elapsed_s * SWEEP_GROWTH / share))


def replay(
    series: Sequence[Reading], trigger: OneReading | Floor, leak_per_s: float
) -> dict[str, float]:
    """Sweeps the trigger starts over ``series`` with ``leak_per_s`` blocks of frozen cycles a
    second on top, and the largest pile any reading held (blocks)."""
    if not series:
        return {"sweeps": 0, "readings": 0, "pile_max": 0.0, "pile_after": 0.0}
    start = series[0][0]
    trigger.restart(start, series[0][1])  # the process starts as if swept: nothing piled
    piled_since = start
    due_s = SWEEP_EVERY_S
    sweeps = 0
    pile_max = pile_after = 0.0  # the latter: after the first sweep
    sweeping = False
    for now, live in series[1:]:
        pile = leak_per_s * (now - piled_since)
        if sweeping:  # this full collection is the sweep: what leaked is freed
            sweeping = False
            sweeps += 1
            due_s = trigger.due_s(now - piled_since, pile / (live + pile))
            piled_since = now
            trigger.restart(now, live)
            continue
        pile_max = max(pile_max, pile)
        if sweeps:
            pile_after = max(pile_after, pile)
        grown = trigger(now, live + round(pile))
        sweeping = grown or now - piled_since >= due_s
    return {
        "sweeps": sweeps,
        "readings": len(series),
        "pile_max": pile_max,
        "pile_after": pile_after,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Replay every soak given; print one table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("soaks", nargs="+", type=Path, help="soak.json files (bench/soak.py --out)")
    p.add_argument(
        "--window", type=float, action="append", help=f"seconds (default {SWEEP_WINDOW_S:g})"
    )
    p.add_argument("--leak", type=float, action="append", help="%% of the first reading a minute")
    p.add_argument("--repeat", type=int, default=1, help="play each soak's readings this often")
    args = p.parse_args(argv)
    windows = args.window or [SWEEP_WINDOW_S]
    leaks = args.leak or [0.0, 1.0, 5.0]
    triggers: dict[str, Callable[[], OneReading | Floor]] = {"one reading": OneReading}
    for w in windows:
        triggers[f"floor over {w:g} s"] = lambda w=w: Floor(w)
    rows = []
    for path in args.soaks:
        series = readings(path, args.repeat)
        if len(series) < 2:
            print(f"{path}: fewer than two readings at full collections' ends", file=sys.stderr)
            continue
        middle = statistics.median(b for _, b in series)
        span = series[-1][0] - series[0][0]
        low, high = min(b for _, b in series), max(b for _, b in series)
        for leak in leaks:
            per_s = leak / 100 * series[0][1] / 60.0
            for name, make in triggers.items():
                r = replay(series, make(), per_s)
                rows.append(
                    [
                        f"{path.parent.name}",
                        f"{len(series)} in {span:.0f} s, {100 * (high - low) / middle:.0f} %",
                        f"{leak:g} %/min",
                        name,
                        f"{r['sweeps']:.0f}",
                        f"{100 * r['pile_max'] / middle:.1f} %",
                        f"{100 * r['pile_after'] / middle:.1f} %" if r["sweeps"] else "-",
                    ]
                )
    table = Table(
        "Sweeps a trigger starts on a soak's readings at full collections' ends",
        ["soak", "readings, range", "leak", "trigger", "sweeps", "largest pile", "after 1st sweep"],
        rows,
        note="largest pile: leaked blocks a reading held at most, in % of the median reading "
        "(after the first sweep: from then on).",
    )
    table.print_both()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
