"""Collector pauses in ``loadsvc serve`` with and without frozen survivors, alternating in
one process: ``bench/soak.py --pauses`` (a steady run: ``--restarts 0``).

Runs ``python -m loadsvc`` with the given arguments in this process, with loadsvc's
collector hook (:class:`loadsvc.collector.FrozenSurvivors`) switched on and off every
``--period`` seconds after ``--settle`` (off first), so the machine's load falls on both
alike. Off: nothing frozen (``gc.unfreeze()``; start-up's heap is walked too, so "off"
slightly overstates what loadsvc did before, when only start-up was frozen). On: the
heap is frozen at the end of the next collection (as if the last full collection's
survivors had been, with what the young generations hold), then the hook runs.
Every collection's pause is timed in this thread's CPU time (the machine's other load
does not inflate it) and written, one JSON line each, to ``--out``:
``{"at": monotonic s, "gen": 0-2, "cpu_s": s, "on": bool, "freed": objects}``; ``{"switch": bool, "at": s}``
at every switch. :func:`phase_table` joins them with the soak's lag samples.
"""

from __future__ import annotations

import argparse
import gc
import json
import runpy
import statistics
import sys
import threading
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import Table


class Alternating:
    """A ``gc.callbacks`` hook: times every collection and switches survivor freezing."""

    def __init__(self, period_s: float, settle_s: float) -> None:
        from loadsvc.collector import FrozenSurvivors

        self.hook = FrozenSurvivors()
        self.t0 = time.monotonic() + settle_s
        self.period = period_s
        self.on = False
        self._started = 0.0
        # arrays: nothing for the collector to walk, and appends allocate no tracked object
        self.at, self.cpu, self.gen, self.flag = array("d"), array("d"), array("b"), array("b")
        self.freed = array("q")
        self.switches: list[tuple[float, bool]] = [(self.t0, False)]  # off after settling

    def _want_on(self, now: float) -> bool:
        return now >= self.t0 and int((now - self.t0) // self.period) % 2 == 1

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        cpu = time.thread_time() - self._started
        now = time.monotonic()
        self.at.append(now)
        self.cpu.append(cpu)
        self.gen.append(info["generation"])
        self.flag.append(self.on)
        self.freed.append(info["collected"])
        want = self._want_on(now)
        if self.on and not want:
            gc.unfreeze()
            self.on = False
            self.switches.append((now, False))
        elif not self.on and want:
            gc.freeze()  # as if the last full collection's survivors had been frozen
            self.on = True
            self.switches.append((now, True))
        elif self.on:
            self.hook(phase, info)

    def dump(self, out: Path) -> None:
        """Everything so far, one JSON line each (rewritten whole: it is small)."""
        n = len(self.at)
        lines = [
            {
                "at": self.at[i],
                "gen": self.gen[i],
                "cpu_s": self.cpu[i],
                "on": bool(self.flag[i]),
                "freed": self.freed[i],
            }
            for i in range(n)
        ]
        lines += [{"switch": on, "at": at} for at, on in list(self.switches)]
        lines.append({"sweeps": self.hook.sweeps, "freezes": self.hook.freezes})
        out.write_text("".join(json.dumps(x) + "\n" for x in lines))


def _install(period_s: float, settle_s: float, out: Path) -> None:
    """Replace loadsvc's start-up freeze with the start-up freeze plus the alternating hook."""
    import loadsvc.cli

    hook = Alternating(period_s, settle_s)

    def calm_collector() -> None:
        gc.collect()
        gc.freeze()
        gc.callbacks.append(hook)

    loadsvc.cli.calm_collector = calm_collector  # type: ignore[attr-defined]

    def keep_writing() -> None:
        while True:
            time.sleep(2.0)
            hook.dump(out)

    threading.Thread(target=keep_writing, daemon=True).start()


def p99(values: Sequence[float]) -> float:
    """The 99th percentile (nearest rank); nan if none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


def phase_table(pauses: Path, samples: Sequence[Any], t0: float) -> Table:
    """Per phase (off/on): collector pauses by generation and the soak's 5 s lag p99s.

    ``samples``: the soak's (``t_s`` seconds after ``t0`` (monotonic), each ``lag_p99_ms`` over
    the interval ending then); a sample counts for a phase only if its whole interval (from
    the previous sample) lies inside one.
    """
    rows_in = [json.loads(line) for line in pauses.read_text().splitlines() if line]
    switches = sorted((r["at"], r["switch"]) for r in rows_in if "switch" in r)
    events = [r for r in rows_in if "at" in r and "switch" not in r]
    first = switches[0][0] if switches else float("inf")

    def phase_at(at: float) -> bool | None:
        state: bool | None = None if at < first else False
        for when, on in switches:
            if when < at:  # a switch's own collection ended the phase before it
                state = on
        return state

    rows = []
    lags: dict[bool, list[float]] = {False: [], True: []}
    prev = None
    for s in samples:
        end, lag_ms = t0 + s.t_s, s.lag_p99_ms
        if prev is not None and lag_ms is not None:
            a, b = phase_at(prev), phase_at(end)
            inside = all(not (prev < w <= end) for w, _ in switches)
            if a is not None and a == b and inside:
                lags[a].append(lag_ms)
        prev = end
    for on in (False, True):
        mine = [e for e in events if e["at"] >= first and phase_at(e["at"]) is on]
        ends = [w for w, _ in switches[1:]] + [max((e["at"] for e in events), default=first)]
        spans = sum(
            max(0.0, end - w) for (w, o), end in zip(switches, ends, strict=True) if o is on
        )
        cells = [("survivors frozen" if on else "off (nothing frozen)"), f"{spans:.0f}"]
        for gen in (0, 1, 2):
            ms = [e["cpu_s"] * 1e3 for e in mine if e["gen"] == gen]
            cells.append(f"{len(ms)}: {p99(ms):.1f} / {max(ms, default=0.0):.1f}")
        cells.append(f"{sum(e['cpu_s'] for e in mine) * 1e3 / max(spans, 1e-9):.1f}")
        lag = lags[on]
        cells.append(f"{statistics.median(lag):.1f} / {max(lag):.1f} ({len(lag)})" if lag else "-")
        rows.append(cells)
    return Table(
        "Collector pauses, survivors frozen or not, alternating in one serve process",
        [
            "phase",
            "seconds",
            "gen 0: n: p99 / max (ms CPU)",
            "gen 1: n: p99 / max",
            "gen 2 (full): n: p99 / max",
            "GC CPU ms per s",
            "lag p99 per 5 s: median / max (n)",
        ],
        rows,
        note="pauses in the process's CPU time (gc.callbacks); lag: the soak's samples of "
        "loadsvc_event_loop_lag_seconds, wall time (the shared machine's load is in it)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Install the hook, then run loadsvc with the arguments after ``--``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--period", type=float, default=30.0, help="seconds per phase")
    p.add_argument("--settle", type=float, default=30.0, help="seconds off before the first")
    p.add_argument("loadsvc_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    rest = args.loadsvc_args[1:] if args.loadsvc_args[:1] == ["--"] else args.loadsvc_args
    _install(args.period, args.settle, args.out)
    sys.argv = ["loadsvc", *rest]
    runpy.run_module("loadsvc", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
