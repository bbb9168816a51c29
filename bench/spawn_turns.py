"""The loop's turns while users start: ``python bench/spawn_turns.py [--mode burst|beside]``.

Issue 22 item 3: starting users must not be long turns of the loop that times every open
connection's frames. Each trial is a fresh generator process (uvloop, the collector calmed
as ``loadsvc run`` does) running one ``ScenarioRun`` against one reference target child.
A task that yields at every turn times each turn in the loop thread's CPU time (the shared
machine's other load does not inflate it; the bench runs under ``taskset -c 0`` with
everything else), and ``gc.callbacks`` the collector's pauses: a turn is the collector's
when pauses that ended in it took half of it (the collector is not the runner's to fix).

``--mode burst``: ``--users`` users at once (the market-open burst's 800 and mix, 3 WS
streams : 5 REST pollers); over the burst's first second the longest turn, the turns over
10 ms (and of those not the collector's), the loop's CPU, the users made by then; and the
longest turn at ``stop()`` (the users cancelled).

``--mode ramp``: ``--users`` WS streams at ``--rate`` a second (default 2,000 at 1,000/s,
the ramp before ``beside``'s window): over the ramp and a second after it, the same
columns as ``burst``, with the users made by the ramp's end (the shape's ``--users``).
Made for the pacer's catch-up (``loadsvc.spawning``): past what the process can make, its
old pace asked for ever more a turn (slices of 8, 20, ... 583, then 1,525 users).

``--mode beside``: ``bench/spawn_calm.py``'s question on one core, in CPU time: 2,000 WS
streams opened at 1,000/s, then 100 more a second (the seed's spawn rate), against the
2,000 alone and as many as the spawning trial holds at the end (``--open``, ``--rate``:
other sizes, for a machine that cannot hold 3,000 connections on one shared core). Over the window: the
loop's own lag p99 (the CPU-time lag, below), the longest turn, turns over 10 ms.
The CPU-time lag: with the spinner the loop never sleeps, so its thread's CPU time is a
timeline of turns laid end to end; a timer due at a point of it waits for the turn in
progress to end. Sampled every 50 ms of that timeline (as the service samples its lag),
that wait is the lag the loop's own work causes, what a core of its own would show.

Conditions alternate within a pass (the order reversed every other pass):

- ``before``: the runner at ``--before`` (a git ref: its ``loadsvc`` package, extracted):
  a tick's users made together in the tick's turn, their starts spread by timers;
- ``after``: this runner, each user made when its start is due, ``PER_TURN`` a turn;
- ``after-burst`` (burst mode): this runner with the starts not spread
  (``spread_starts=False``): every start due at once, only the budget spreading them;
- ``open``, ``open-end`` (beside mode): 2,000 held, and as many as the spawning ends with.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    # Last: a "before" trial's PYTHONPATH puts the older loadsvc ahead of this one.
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.table import Table

ROOT = Path(__file__).resolve().parent.parent
TRUST_S = 0.010  # the seed's loop lag trust limit (loadsvc.lag)
SAMPLE_S = 0.050  # the service's lag sampling interval (loadsvc.loopmon)
FIRST_S = 1.0  # burst mode: the burst's tick
HELD_S = 3.0  # burst mode: from the start to stop()
OPEN, FAST_RATE, SPAWN_RATE = 2000, 1000, 100  # beside mode: as bench/spawn_calm.py
SETTLE_S, WINDOW_S = 2.0, 10.0  # beside mode: after the 2,000 are open, then measured
MIX = """\
      - kind: rest
        weight: 5
        think_time: {min: 100ms, max: 500ms}
        tasks:
          - {path: /api/market/snapshot, weight: 5}
          - {path: /api/market/foreign-detail, weight: 3}
          - {path: "/api/market/alerts?limit=50", weight: 1}
"""


def _scenario(shape: str, ws_weight: int, rest: bool) -> str:
    return f"""\
version: 1
scenarios:
  s:
    shape: {shape}
    users:
      - kind: ws_stream
        weight: {ws_weight}
        path: /ws/market
        message: {{required_keys: [quotes], skip_types: [status]}}
""" + (MIX if rest else "")


def _first_s(mode: str, users: int) -> float:
    """Burst and ramp modes: when the shape has made every user (the burst's tick)."""
    return FIRST_S if mode == "burst" else users / SPAWN_RATE


def _held_s(mode: str, users: int) -> float:
    """Burst and ramp modes: from the start to stop()."""
    return HELD_S if mode == "burst" else users / SPAWN_RATE + 2.0


def _open_end() -> int:
    """What the spawning trial holds at its window's end (about)."""
    return OPEN + round(SPAWN_RATE * (SETTLE_S + WINDOW_S + 1))


def _shape(mode: str, condition: str, users: int) -> str:
    if mode == "burst":
        return f"{{kind: constant, users: {users}, duration: 60s}}"
    if mode == "ramp":
        return f"{{kind: constant, users: {users}, duration: 60s, spawn_rate: {SPAWN_RATE}}}"
    if condition.startswith("open"):
        held = OPEN if condition == "open" else _open_end()
        return f"{{kind: constant, users: {held}, duration: 120s, spawn_rate: {FAST_RATE}}}"
    more = round(SPAWN_RATE * (SETTLE_S + WINDOW_S + 30))  # 100/s past the window's end
    return (
        f"{{kind: ramping, stages: [{{duration: {OPEN / FAST_RATE:g}s, target: {OPEN}}}, "
        f"{{duration: {more / SPAWN_RATE:g}s, target: {OPEN + more}}}]}}"
    )


class _Probe:
    """Every turn of the loop (CPU length, cumulative CPU at its end, wall span) and the
    collector's pauses made in the loop's thread (wall end, CPU length)."""

    def __init__(self) -> None:
        from array import array

        # arrays: nothing for the collector to walk
        self.start, self.end = array("d"), array("d")  # wall
        self.cpu, self.cpu_end = array("d"), array("d")
        self.pause_at, self.pause = array("d"), array("d")
        self.making_at = array("d")  # when the runner made users (wall)
        self.spinning = True
        self._gc_started = 0.0
        self._loop_thread = 0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        import threading

        if threading.get_ident() != self._loop_thread:
            return  # the clock's thread (loadsvc.collector): not a turn of the loop
        if phase == "start":
            self._gc_started = time.thread_time()
        else:
            self.pause_at.append(time.monotonic())
            self.pause.append(time.thread_time() - self._gc_started)

    async def spin(self) -> None:
        import asyncio
        import threading

        self._loop_thread = threading.get_ident()
        w0, c0 = time.monotonic(), time.thread_time()
        while self.spinning:
            await asyncio.sleep(0)
            w, c = time.monotonic(), time.thread_time()
            self.start.append(w0)
            self.end.append(w)
            self.cpu.append(c - c0)
            self.cpu_end.append(c)
            w0, c0 = w, c

    def turns(self, t0: float, t1: float) -> range:
        """Indexes of the turns that started within [t0, t1]."""
        return range(bisect.bisect_left(self.start, t0), bisect.bisect_right(self.start, t1))

    def collectors(self, i: int) -> float:
        """The collector's CPU in turn ``i``."""
        lo = bisect.bisect_left(self.pause_at, self.start[i])
        hi = bisect.bisect_right(self.pause_at, self.end[i])
        return sum(self.pause[lo:hi])

    def making(self, i: int) -> bool:
        """Whether the runner made users in turn ``i``."""
        lo = bisect.bisect_left(self.making_at, self.start[i])
        return lo < len(self.making_at) and self.making_at[lo] <= self.end[i]

    def summary(self, t0: float, t1: float) -> dict[str, float]:
        """The turns of [t0, t1]: longest, over 10 ms (all, not the collector's), CPU, lag."""
        idx = self.turns(t0, t1)
        long = [i for i in idx if self.cpu[i] > TRUST_S]
        own = [i for i in long if self.collectors(i) < self.cpu[i] / 2]
        making = [i for i in idx if self.making(i)]
        return {
            "making_over_10": sum(1 for i in own if self.making(i)),
            "making_longest_ms": max((self.cpu[i] for i in making), default=0.0) * 1e3,
            "longest_ms": max((self.cpu[i] for i in idx), default=0.0) * 1e3,
            "longest_own_ms": max((self.cpu[i] for i in idx if i not in long or i in own),
                                  default=0.0) * 1e3,
            "over_10": len(long),
            "over_10_own": len(own),
            "cpu_ms": sum(self.cpu[i] for i in idx) * 1e3,
            "lag_p99_ms": self.cpu_lag_p99(idx) * 1e3,
            "lag_p99_own_ms": self.cpu_lag_p99(idx, without_collector=True) * 1e3,
        }  # fmt: skip

    def cpu_lag_p99(self, idx: range, without_collector: bool = False) -> float:
        """p99 of the CPU-time lag over turns ``idx`` (see the module's docstring); with
        ``without_collector``, as if the collector's pauses had not been in the turns."""
        if not idx:
            return 0.0
        lengths = [self.cpu[i] for i in idx]
        if without_collector:
            lengths = [max(0.0, c - self.collectors(i)) for c, i in zip(lengths, idx, strict=True)]
        ends = list(itertools.accumulate(lengths))
        tau = 0.0
        lags = []
        while tau < ends[-1]:
            lags.append(ends[bisect.bisect_right(ends, tau)] - tau)
            tau += SAMPLE_S
        lags.sort()
        return lags[min(len(lags) - 1, int(0.99 * len(lags)))]


async def _trial(url: str, mode: str, users: int, condition: str) -> dict[str, Any]:
    """One trial in this process."""
    import asyncio
    import gc

    from prometheus_client import CollectorRegistry

    import loadsvc.runner
    from loadsvc.config import parse_config
    from loadsvc.metrics import create_metrics
    from loadsvc.recorder import Recorder
    from loadsvc.runner import RunOptions, ScenarioRun
    from loadsvc.users import Target

    text = _scenario(_shape(mode, condition, users), 3, rest=mode == "burst")  # ramp: WS
    spec = parse_config(text, "spawn_turns.yaml").scenario("s")
    options = RunOptions(spread_starts=condition != "after-burst")
    run = ScenarioRun(spec, Target(url), Recorder(create_metrics(CollectorRegistry())), options)
    # Users made, not those waiting for their start (the runner before had no such count).
    made = getattr(run, "started_count", run.user_count)
    probe = _Probe()
    # Where the runner makes users: this runner's _start_user (one each, when due), the
    # one before's _reconcile (a tick's at once). Wrapped before execute() binds them.
    maker = "_start_user" if hasattr(run, "_start_user") else "_reconcile"
    made_by = getattr(run, maker)

    def making(*args: Any) -> None:
        probe.making_at.append(time.monotonic())
        made_by(*args)

    setattr(run, maker, making)
    gc.callbacks.append(probe.on_gc)
    spinner = asyncio.create_task(probe.spin())
    await asyncio.sleep(0.5)  # the spinner and the loop settled
    t0 = time.monotonic()
    execution = asyncio.create_task(run.execute())
    out: dict[str, Any] = {"condition": condition, "runner": loadsvc.runner.__file__}
    if mode in ("burst", "ramp"):
        first = _first_s(mode, users)
        await asyncio.sleep(first)
        out["made"] = made()
        window = (t0, t0 + first + (1.0 if mode == "ramp" else 0.0))
        await asyncio.sleep(_held_s(mode, users) - first)
        out["made_held"] = made()
    else:
        while made() < OPEN:
            await asyncio.sleep(0.1)
        await asyncio.sleep(SETTLE_S)
        window = (time.monotonic(), time.monotonic() + WINDOW_S)
        out["made_start"] = made()
        if getattr(run, "_starts", None):
            run._starts.most_in_a_slice = run._starts.caught_up = 0  # the window's, not the ramp's
        await asyncio.sleep(WINDOW_S)
        out["made"] = made()
    t_stop = time.monotonic()
    run.stop()
    await execution
    t_end = time.monotonic()
    probe.spinning = False
    await spinner
    out.update(probe.summary(*window))
    starts = getattr(run, "_starts", None)  # this runner's pacer (the one before had none)
    out["most_a_turn"] = starts.most_in_a_slice if starts else None
    out["caught_up"] = starts.caught_up if starts else None
    stopping = probe.summary(t_stop, t_end)
    out["stop_longest_ms"], out["stop_over_10"] = stopping["longest_ms"], stopping["over_10"]
    out["stop_longest_own_ms"] = stopping["longest_own_ms"]
    retirements = getattr(run, "_retirements", None)
    out["stop_most_a_turn"] = retirements.most_in_a_slice if retirements else None
    return out


def _child_main(url: str, mode: str, users: int, condition: str) -> None:
    import uvloop

    from loadsvc.collector import calm_collector
    from loadsvc.logs import configure_logging

    configure_logging(json=True, level="warning", stream=sys.stderr)
    calm_collector()  # as `loadsvc run`: start-up's heap frozen, young ones on a clock
    print(json.dumps(uvloop.run(_trial(url, mode, users, condition))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _extract(ref: str, into: Path) -> Path:
    """The ``loadsvc`` package as it was at ``ref`` (``git archive``), under ``into``."""
    archive = into / "before.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", ref, "loadsvc"], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "before", filter="data")
    return into / "before"


def _wait_listening(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the target did not listen on {port} within {timeout_s} s")


COLUMNS = {  # column: (key, format), by mode
    "burst": [
        ("longest turn ms", "longest_ms", "{:.1f}"),
        ("turns > 10 ms", "over_10", "{:.0f}"),
        ("of them not GC", "over_10_own", "{:.0f}"),
        ("longest not GC ms", "longest_own_ms", "{:.1f}"),
        ("loop CPU ms", "cpu_ms", "{:.0f}"),
        ("users made by 1 s", "made", "{:.0f}"),
        (f"by {HELD_S:g} s", "made_held", "{:.0f}"),
        ("most made a turn", "most_a_turn", "{:.0f}"),
        ("made past the budget", "caught_up", "{:.0f}"),
        ("longest turn making users ms", "making_longest_ms", "{:.1f}"),
        ("stop: longest turn ms", "stop_longest_ms", "{:.1f}"),
        ("stop: turns > 10 ms", "stop_over_10", "{:.0f}"),
        ("stop: longest not GC ms", "stop_longest_own_ms", "{:.1f}"),
        ("stop: most cancelled a turn", "stop_most_a_turn", "{:.0f}"),
    ],
    "beside": [
        ("CPU lag p99 ms", "lag_p99_ms", "{:.1f}"),
        ("without GC", "lag_p99_own_ms", "{:.1f}"),
        ("longest turn ms", "longest_ms", "{:.1f}"),
        ("turns > 10 ms", "over_10", "{:.0f}"),
        ("of them not GC", "over_10_own", "{:.0f}"),
        ("longest not GC ms", "longest_own_ms", "{:.1f}"),
        ("loop CPU ms", "cpu_ms", "{:.0f}"),
        ("open at start", "made_start", "{:,.0f}"),
        ("open at end", "made", "{:,.0f}"),
        ("most made a turn", "most_a_turn", "{:.0f}"),
        ("turns > 10 ms making users, not GC", "making_over_10", "{:.0f}"),
        ("longest turn making users ms", "making_longest_ms", "{:.1f}"),
    ],
}


# Ramp mode: burst's columns, the users made at the ramp's end and at stop().
COLUMNS["ramp"] = [
    ("users made by the ramp's end", k, f) if k == "made"
    else ("by stop()", k, f) if k == "made_held" else (h, k, f)
    for h, k, f in COLUMNS["burst"]
]  # fmt: skip


def _row(mode: str, r: dict[str, Any]) -> list[str]:
    cells = ("-" if r[key] is None else fmt.format(r[key]) for _, key, fmt in COLUMNS[mode])
    return [r["condition"], *cells]


def table(mode: str, rows: list[dict[str, Any]], users: int, when: str) -> Table:
    """Every trial, then the median of each column per condition."""
    body = [_row(mode, r) for r in rows]
    for condition in dict.fromkeys(r["condition"] for r in rows):
        mine = [r for r in rows if r["condition"] == condition]
        keys = [key for _, key, _ in COLUMNS[mode]]
        values = {k: [r[k] for r in mine if r[k] is not None] for k in keys}
        median = {k: statistics.median(v) if v else None for k, v in values.items()}
        body.append(_row(mode, {**median, "condition": f"median of {condition}"}))
    if mode == "burst":
        title = f"Loop turns (CPU time) when {users} users start at once, {when}"
        note = (
            "The burst's first second (its tick), then from stop() to the run's end. Turns in "
            "the loop thread's CPU time; not GC: the collector took less than half of it."
        )
    elif mode == "ramp":
        title = (
            f"Loop turns (CPU time) while {users:,} WS streams start at {SPAWN_RATE:,}/s, {when}"
        )
        note = (
            "The ramp and a second after it, then from stop() to the run's end. Turns in "
            "the loop thread's CPU time; not GC: the collector took less than half of it."
        )
    else:
        title = (
            f"The loop's own lag with {OPEN:,} open WS streams, alone and while starting "
            f"{SPAWN_RATE}/s more, one core, {when}"
        )
        note = (
            f"A {WINDOW_S:g} s window from {SETTLE_S:g} s after the {OPEN:,} are open. CPU lag: "
            "the wait of a timer due every 50 ms of the loop thread's CPU time for the turn in "
            "progress (the lag the loop's own work causes). Turns in CPU time."
        )
    return Table(title, ["condition", *(h for h, _, _ in COLUMNS[mode])], body, note=note)


def main() -> None:
    """Alternate the conditions against one target; print the table."""
    global OPEN, SPAWN_RATE  # one run's sizes, read by _shape and the table
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("burst", "ramp", "beside"), default="burst")
    p.add_argument("--users", type=int, default=None, help="burst: at once (800); ramp: 2,000")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--open", type=int, default=OPEN, help="beside mode: connections held")
    p.add_argument("--rate", type=int, default=None, help="starts a second: ramp 1,000, beside 100")
    p.add_argument("--before", default="9f19b5b", help="git ref of the runner before")
    p.add_argument(
        "--conditions", help="default: before,after,after-burst | open,before,after,open-end"
    )
    p.add_argument("--trial", nargs=2, metavar=("URL", "CONDITION"), help=argparse.SUPPRESS)
    args = p.parse_args()
    ramp = args.mode == "ramp"
    OPEN, SPAWN_RATE = args.open, args.rate or (FAST_RATE if ramp else SPAWN_RATE)
    args.users = args.users or (OPEN if ramp else 800)
    if args.trial:
        _child_main(args.trial[0], args.mode, args.users, args.trial[1])
        return
    default = {"burst": "before,after,after-burst", "ramp": "before,after"}.get(
        args.mode, "open,before,after,open-end"
    )
    conditions = (args.conditions or default).split(",")
    port = _free_port()
    python = sys.executable
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="spawn_turns.") as tmp:
        before = _extract(args.before, Path(tmp)) if "before" in conditions else None
        target = subprocess.Popen([python, str(ROOT / "bench" / "target_main.py"), str(port)])
        try:
            _wait_listening(port)
            for k in range(args.passes):
                for condition in conditions if k % 2 == 0 else conditions[::-1]:
                    # The package imported first: the extracted one for "before".
                    path = [str(before)] if condition == "before" and before else []
                    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(ROOT)])}
                    try:
                        out = subprocess.run(
                            [python, __file__, "--mode", args.mode, "--users", str(args.users),
                             "--open", str(OPEN), "--rate", str(SPAWN_RATE),
                             "--trial", f"http://127.0.0.1:{port}", condition],
                            env=env, capture_output=True, text=True, timeout=180, check=True,
                        )  # fmt: skip
                    except subprocess.SubprocessError as exc:  # a starved trial: say so, go on
                        print(f"{condition}: trial failed ({exc!r})", flush=True)
                        continue
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    print(" | ".join(_row(args.mode, rows[-1])), flush=True)
        finally:
            target.terminate()  # by its PID
            target.wait(10)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows.sort(key=lambda r: conditions.index(r["condition"]))
    print(table(args.mode, rows, args.users, when).markdown())


if __name__ == "__main__":
    main()
