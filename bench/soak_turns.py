"""Every long turn of ``loadsvc serve``'s loop, and what ran in it: ``bench/soak.py --turns``.

Runs ``python -m loadsvc`` with the given arguments in this process, with three probes:

- a task that yields at every turn of the loop (as ``bench/reconnect_calm.py --turns``): a
  turn is the stretch between two of its steps, timed in this thread's CPU time (the
  machine's other load does not inflate it); turns over ``--min-ms`` are kept. It keeps the
  loop from ever sleeping, so turns are the loop's own work, never a wait;
- a wall-clock timer (``ITIMER_REAL``, every ``--sample-ms``; ``ITIMER_PROF`` ticks only
  every 4 ms here): each tick records the main thread's stack, folded (``root;...;leaf``
  as ``module:function``), when the main thread next runs Python (a tick during the
  collector or the loop's C code lands on the next Python line run);
- the cyclic collector's pauses (``gc.callbacks``), in CPU time, with their generation.

Every ``--dump-every`` s and at exit all three are written to ``--out`` as JSON, and
:func:`turn_table` attributes each long turn: to the collector if a pause ended in it and
takes most of it, else to the callback most of its samples were in (:data:`KINDS`).
``SOAK_TURNS_NO_YOUNG=1`` leaves out :class:`loadsvc.collector.YoungCollections` (the
"before" of a paired run). ``SOAK_TURNS_FULL=1`` writes a line to stderr (serve's log) at every full collection: its CPU
time, the three generations' sizes at its start (what it walks), what it collected and the
objects frozen after it; counting the generations and the frozen objects walks them on the
collector's thread, with the GIL held: at the seed's full size the loop waits 16-33 ms at every
full collection (every 1.5 s; longest while the burst runs), so the lag
figures of such a run are the probe's, not loadsvc's (the 17:10 run of 2026-12-04, whose
restarts read 12.5-25 ms). ``SOAK_TURNS_GC=700,3,10`` in the environment sets the collector's thresholds (a
diagnostic: what loadsvc ships is in :mod:`loadsvc.collector`). The timer and the spinner cost a few per cent of a core; compare runs taken with them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import runpy
import signal
import statistics
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import Table

# What a turn was doing, by the first of these found in its samples' stacks (in order):
# (kind, a substring of the folded stack). Data, read by one classifier.
KINDS: tuple[tuple[str, str], ...] = (
    ("/metrics exposition", "exposition"),
    ("/api/status build", ":status"),
    ("status page / series", "series"),
    ("verdict window close", "verdict"),
    ("sampler", "sampler"),
    ("REST", "rest:"),
    ("endings queue", "endings:"),
    ("WS frames read", "arrival:"),
    ("WS frames read", "frames:"),
    ("WS connection", "ws:"),
    ("aiohttp server", "aiohttp.web"),
)


class Probes:
    """The turn spinner, the profiling timer's samples and the collector's pauses."""

    def __init__(self, min_s: float, sample_s: float) -> None:
        self.min_s, self.sample_s = min_s, sample_s
        # arrays and one dict of stacks: nothing new per sample for the collector to walk
        self.turn_at, self.turn_cpu, self.turn_wall = array("d"), array("d"), array("d")
        self.sample_at, self.sample_stack = array("d"), array("i")
        self.stacks: dict[str, int] = {}
        self.stack_names: list[str] = []  # the keys of stacks in order: read by dump's thread
        self.gc_at, self.gc_cpu, self.gc_gen = array("d"), array("d"), array("b")
        self._gc_started = 0.0
        self._log_full = bool(os.environ.get("SOAK_TURNS_FULL"))  # read once, not per collection
        self._dumped = (0, 0, 0, 0)  # how much of each was written
        # SOAK_TURNS_YOUNG=N: every Nth young collection, what its generation holds (slow).
        self.young_every = int(os.environ.get("SOAK_TURNS_YOUNG", "0") or 0)
        self._young_seen = 0
        self._young_pending: dict[str, Any] | None = None
        self.young: list[dict[str, Any]] = []

    async def spin(self) -> None:
        """Yield at every turn; keep the turns that took over ``min_s`` of CPU."""
        wall, cpu = time.monotonic, time.thread_time
        w0, c0 = wall(), cpu()
        while True:
            await asyncio.sleep(0)
            w, c = wall(), cpu()
            if c - c0 > self.min_s:
                self.turn_at.append(w0)
                self.turn_cpu.append(c - c0)
                self.turn_wall.append(w - w0)
            w0, c0 = w, c

    def on_tick(self, _signum: int, frame: FrameType | None) -> None:
        """The profiling timer: the main thread's stack now, folded root first."""
        names = []
        while frame is not None:
            code = frame.f_code
            module = frame.f_globals.get("__name__", "?")
            names.append(f"{module}:{code.co_qualname}")
            frame = frame.f_back
        key = ";".join(reversed(names))
        index = self.stacks.get(key)
        if index is None:
            index = self.stacks[key] = len(self.stack_names)
            self.stack_names.append(key)
        self.sample_at.append(time.monotonic())
        self.sample_stack.append(index)

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        """The collector's callback: each pause's end, CPU time and generation."""
        if phase == "start":
            if self.young_every and info["generation"] == 0:
                self._young_seen += 1
                if self._young_seen % self.young_every == 0:
                    self._look_at_young()
            self._gc_started = time.thread_time()
            if info["generation"] == 2 and self._log_full:
                self._full_sizes = [len(gc.get_objects(i)) for i in range(3)]
                self._gc_started = time.thread_time()
            return
        now = time.thread_time()
        if info["generation"] == 2 and self._log_full:
            print(
                f"FULLGC {time.monotonic():.3f} {(now - self._gc_started) * 1e3:.2f}ms "
                f"sizes={self._full_sizes} collected={info['collected']} "
                f"uncollectable={info['uncollectable']} frozen={gc.get_freeze_count()} "
                f"thread={threading.current_thread().name}",
                file=sys.stderr,
                flush=True,
            )
        if self._young_pending is not None:
            self.young.append({**self._young_pending, "cpu_s": now - self._gc_started})
            self._young_pending = None
        self.gc_at.append(time.monotonic())
        self.gc_cpu.append(now - self._gc_started)
        self.gc_gen.append(info["generation"])

    def _look_at_young(self) -> None:
        """The young generation's size, referents and largest containers (a diagnostic)."""
        objects = gc.get_objects(0)
        sizes = sorted(
            ((len(gc.get_referents(o)), type(o).__qualname__) for o in objects), reverse=True
        )
        by_type = Counter(t for _, t in sizes)
        self._young_pending = {
            "at": time.monotonic(),
            "objects": len(objects),
            "referents": sum(n for n, _ in sizes),
            "largest": sizes[:5],
            "types": by_type.most_common(8),
        }

    def dump(self, out: Path) -> None:
        """What is new since the last dump, as one JSON line appended to ``out`` (a full
        rewrite every few seconds would cost the loop's core more than the loop)."""
        done = self._dumped
        # Lengths first, the shortest of each group: the loop's thread appends meanwhile
        # (a turn's start before its CPU time), and what it adds waits for the next dump.
        now = (
            min(len(self.turn_at), len(self.turn_cpu), len(self.turn_wall)),
            min(len(self.sample_at), len(self.sample_stack)),
            min(len(self.gc_at), len(self.gc_cpu), len(self.gc_gen)),
            len(self.stack_names),
        )
        line = {
            "turns": [
                a[done[0] : now[0]].tolist() for a in (self.turn_at, self.turn_cpu, self.turn_wall)
            ],
            "samples": [a[done[1] : now[1]].tolist() for a in (self.sample_at, self.sample_stack)],
            "gc": [a[done[2] : now[2]].tolist() for a in (self.gc_at, self.gc_cpu, self.gc_gen)],
            "stacks": {done[3] + i: s for i, s in enumerate(self.stack_names[done[3] : now[3]])},
            "sample_s": self.sample_s,
            "young": self.young[:],
        }
        self.young.clear()
        self._dumped = now
        with out.open("a") as f:
            f.write(json.dumps(line) + "\n")


def load(path: Path) -> dict[str, Any]:
    """The lines :meth:`Probes.dump` appended, joined into one document."""
    doc: dict[str, Any] = {"turns": [[], [], []], "samples": [[], []], "gc": [[], [], []]}
    doc["stacks"] = {}
    for text in path.read_text().splitlines():
        line = json.loads(text)
        for key in ("turns", "samples", "gc"):
            n = min(len(part) for part in line[key])  # files written before the dump's fix
            for whole, part in zip(doc[key], line[key], strict=True):
                whole.extend(part[:n])
        doc["stacks"].update(line["stacks"])
        doc["sample_s"] = line["sample_s"]
    return doc


def _install(probes: Probes, out: Path, dump_every_s: float) -> None:
    """Start the spinner inside serve's loop, the timer and the collector hook."""
    import loadsvc.cli

    run_async = loadsvc.cli._run_async
    wanted = os.environ.get("SOAK_TURNS_GC", "")
    thresholds = tuple(int(x) for x in wanted.split(",")) if wanted else ()

    def with_spinner(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        async def main() -> Any:
            if thresholds:  # a diagnostic: other collector thresholds, from the environment
                gc.set_threshold(*thresholds)
            spinner = asyncio.get_running_loop().create_task(probes.spin())
            try:
                return await coro_fn()
            finally:
                spinner.cancel()

        return run_async(main)

    loadsvc.cli._run_async = with_spinner
    clock = os.environ.get("SOAK_TURNS_YOUNG_CLOCK", "")  # "EVERY_S,MIDDLE_EVERY": a variant
    if clock:
        from loadsvc.collector import YoungCollections

        every, middle = clock.split(",")
        YoungCollections.__init__.__defaults__ = (float(every), int(middle))
    if os.environ.get("SOAK_TURNS_NO_YOUNG"):  # the "before" of a paired run: Python's schedule
        from loadsvc.collector import YoungCollections

        YoungCollections.start = lambda self: self  # type: ignore[method-assign]
    gc.callbacks.append(probes.on_gc)
    signal.signal(signal.SIGALRM, probes.on_tick)
    signal.setitimer(signal.ITIMER_REAL, probes.sample_s, probes.sample_s)

    def keep_writing() -> None:
        while True:
            time.sleep(dump_every_s)
            probes.dump(out)

    threading.Thread(target=keep_writing, daemon=True).start()


# Frames that run the loop, not a callback: a stack is read from the last of them on.
_LOOP_FRAMES = ("uvloop:", "asyncio.runners:", "asyncio.base_events:", "asyncio.events:")
# A tick that found no callback running (the loop's own C code: its poll, uvloop's socket
# reads and writes, timers) lands on the spinner's step that follows it.
_LOOP_WORK = "loop's own work (poll, uvloop's reads and writes)"


def callback_of(stack: str) -> list[str]:
    """A folded stack's frames from the loop's callback on (start-up frames dropped)."""
    frames = stack.split(";") if stack else []
    last = max((i for i, f in enumerate(frames) if f.startswith(_LOOP_FRAMES)), default=-1)
    return frames[last + 1 :]


def kind_of(stacks: Sequence[str]) -> str:
    """The kind of work most of a turn's samples were in (:data:`KINDS`), else its callback."""
    votes: Counter[str] = Counter()
    for stack in stacks:
        frames = callback_of(stack)
        text = ";".join(frames)
        for kind, marker in KINDS:
            if marker in text:
                votes[kind] += 1
                break
        else:
            if not frames or frames[0].startswith("__main__:Probes"):
                votes[_LOOP_WORK] += 1
            else:
                votes["other: " + frames[0]] += 1
    return votes.most_common(1)[0][0] if votes else "no sample"


def attribute(doc: dict[str, Any], start: float, end: float) -> list[tuple[str, float]]:
    """Each long turn that began in [start, end]: (kind, CPU seconds)."""
    turn_at, turn_cpu, turn_wall = doc["turns"]
    sample_at, sample_stack = doc["samples"]
    stacks = doc["stacks"]
    gc_at, gc_cpu, gc_gen = doc["gc"]
    out = []
    s = g = 0
    for at, cpu, wall in zip(turn_at, turn_cpu, turn_wall, strict=True):
        if not start <= at <= end:
            continue
        until = at + wall
        while s < len(sample_at) and sample_at[s] < at:
            s += 1
        while g < len(gc_at) and gc_at[g] < at:
            g += 1
        mine = []
        j = s
        while j < len(sample_at) and sample_at[j] <= until:
            mine.append(stacks[str(sample_stack[j])])
            j += 1
        pauses = []
        k = g
        while k < len(gc_at) and gc_at[k] <= until:
            pauses.append((gc_cpu[k], gc_gen[k]))
            k += 1
        paused = sum(p for p, _ in pauses)
        if paused >= cpu / 2:
            gen = max(pauses)[1]
            out.append((f"collector, generation {gen}", cpu))
        else:
            out.append((kind_of(mine), cpu))
    return out


def turn_table(doc: dict[str, Any], start: float, end: float, limit_s: float, title: str) -> Table:
    """Long turns by kind: how many over the limit, median, worst, CPU per minute."""
    turns = attribute(doc, start, end)
    minutes = max(1e-9, (end - start) / 60)
    by_kind: dict[str, list[float]] = {}
    for kind, cpu in turns:
        by_kind.setdefault(kind, []).append(cpu)
    rows = []
    for kind, cpus in sorted(by_kind.items(), key=lambda kv: -sum(c > limit_s for c in kv[1])):
        over = [c for c in cpus if c > limit_s]
        rows.append(
            [
                kind,
                f"{len(over) / minutes:.1f}",
                f"{len(cpus) / minutes:.0f}",
                f"{statistics.median(cpus) * 1e3:.1f}",
                f"{max(cpus) * 1e3:.1f}",
            ]
        )
    over_all = [c for _, c in turns if c > limit_s]
    rows.append(
        [
            "all",
            f"{len(over_all) / minutes:.1f}",
            f"{len(turns) / minutes:.0f}",
            f"{statistics.median([c for _, c in turns]) * 1e3:.1f}" if turns else "-",
            f"{max((c for _, c in turns), default=0.0) * 1e3:.1f}",
        ]
    )
    return Table(
        title,
        [
            "turn spent in",
            f"turns > {limit_s * 1e3:g} ms per min",
            "turns > 1 ms per min",
            "median (ms CPU)",
            "max (ms CPU)",
        ],
        rows,
        note="turns of serve's loop in its thread's CPU time; a turn is the collector's if a "
        "pause ending in it took half of it or more, else the kind most of its profiling "
        "samples were in",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Install the probes, then run loadsvc with the arguments after ``--``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--min-ms", type=float, default=1.0, help="keep turns longer than this")
    p.add_argument("--sample-ms", type=float, default=1.0, help="profiling timer period")
    p.add_argument("--dump-every", type=float, default=5.0)
    p.add_argument("loadsvc_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    rest = args.loadsvc_args[1:] if args.loadsvc_args[:1] == ["--"] else args.loadsvc_args
    probes = Probes(args.min_ms / 1e3, args.sample_ms / 1e3)
    args.out.unlink(missing_ok=True)
    _install(probes, args.out, args.dump_every)
    sys.argv = ["loadsvc", *rest]
    try:
        runpy.run_module("loadsvc", run_name="__main__", alter_sys=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        probes.dump(args.out)


if __name__ == "__main__":
    main()
