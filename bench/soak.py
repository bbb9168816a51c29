"""The soak: ``python bench/soak.py [--duration 30m]`` (``make soak``).

Runs the seed configuration at its full sizes under ``loadsvc serve`` against the reference
target for ``--duration`` while faults happen on a schedule (the target killed and restarted
``--restarts`` times, stalls, latency and error bursts, malformed frames, abrupt closes), and
samples loadsvc's own health from its /metrics every ``--sample-every``. Prints a summary and
a table in Markdown (also ``soak.md``), and writes ``soak.png``, ``samples.csv``, ``soak.json``
and the processes' logs to ``--out``. Everything listens on 127.0.0.1, every process is
stopped by PID, and the run ends by itself.

The burst and the storm come every whole number of restart cycles (``bench/soak_config.py``),
so every cycle ends at a known phase of the load, and memory is judged after restart 2N
against N (within 2 %) over windows of whole periods of it: the live heap at the cycles' ends,
RSS by its ceiling over the window and its high-water (``bench/soak_judge.py``); every soak's
table states the trend fitted over the cycles, per day, with its 95 % interval.
``--accelerated`` (``make soak-accelerated``) is the proof that separates a plateau from
a slow leak in minutes: 40 restarts 8 s apart with faults and verdict windows between them,
the history compacted over and over.

serve runs on the allocator the image ships: jemalloc, preloaded (``--malloc jemalloc``, the
default where ``libjemalloc2`` is installed; ``--malloc glibc`` for glibc's malloc). The
table's first line says what serve ran with.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import glob
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loopthread, procs, soak_pauses, soak_turns
from bench.soak_config import (
    ACCELERATED_HISTORY_BYTES,
    InStep,
    accelerated,
    in_step,
    schedule_period_s,
    soak_config_text,
    verdict_every,
)
from bench.soak_fault_runner import cycle_end, run_faults
from bench.soak_faults import (
    RESTART_AT,
    SoakTarget,
    cycle_gap,
    netem_unavailable,
    plan_faults,
)
from bench.soak_judge import JUDGED, n_against_2n, past_first_period
from bench.soak_report import (
    Sample,
    Scrape,
    SoakResult,
    faults_seen,
    growth,
    markdown,
    plot,
    sample,
    scrape,
)
from bench.soak_trend import WITHIN, within
from bench.soak_wrappers import serve_runner
from loadsvc.config.durations import parse_duration
from loadsvc.lag import trust_limit_of
from loadsvc.localstack import free_port

OUT = Path(__file__).resolve().parent / "results" / "soak"
TRUST_LIMIT_S = trust_limit_of([0.1, 0.2])  # the seed's WS p99 and REST p95 limits
# What an unhandled exception leaves in the log (asyncio's handler, the interpreter, structlog).
PROBLEM = re.compile(
    r"Traceback \(most recent call last\)|exception was never retrieved|"
    r"Exception in callback|\"level\": \"critical\""
)


# The accelerated soak: 40 restarts 8 s apart after a 30 s warm-up (about 6 minutes), at
# 0.3 of the seed's users, so that N = 20 against 2N = 40 fits in a coffee break. Verdict
# windows of two cycles, so every cycle ends at the same point of a window or the next.
ACCELERATED_CYCLE_S = 8.0
ACCELERATED = {
    "restarts": "40",
    "warmup": "30s",
    "down": "500ms",
    "scale": "0.3",
    "sample_every": "1s",
    "verdict_every": "16s",
}
PRESET_TYPES: dict[str, Callable[[str], Any]] = {
    "restarts": int,
    "warmup": parse_duration,
    "down": parse_duration,
    "scale": float,
    "sample_every": parse_duration,
}


class Sampler(threading.Thread):
    """Scrapes loadsvc every ``every`` seconds into samples until stopped."""

    def __init__(self, url: str, every: float, t0: float, pid: int | None = None) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.url, self.every, self.t0, self.pid = url, every, t0, pid
        self.samples: list[Sample] = []
        self.last: Scrape | None = None
        self.failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        """Sample on a fixed schedule (a slow scrape does not shift the next one)."""
        due = time.monotonic()
        times = None if self.pid is None else loopthread.read(self.pid)
        while not self.stopping.is_set():
            try:
                now = scrape(self.url)
                was, times = times, None if self.pid is None else loopthread.read(self.pid)
                spent = None if was is None or times is None else times.since(was)
                self.samples.append(sample(time.monotonic() - self.t0, self.last, now, spent))
                self.last = now
            except OSError:
                self.failures += 1
            due += self.every
            self.stopping.wait(max(0.0, due - time.monotonic()))


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (from /proc; none where it cannot be read)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _widen(pid: int, cores: set[int]) -> None:
    """Let ``pid`` run on ``cores`` (it may have exited meanwhile)."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, cores)


def history_kept(path: Path, last: Scrape, small: bool) -> dict[str, float]:
    """Verdict records loadsvc wrote and what its compacted history file kept."""
    if not path.is_file():
        return {}
    written = last.total("loadsvc_scenario_runs_total") or 0.0
    kept = len(path.read_bytes().splitlines())
    limit = ACCELERATED_HISTORY_BYTES if small else 10 * 2**20
    return {"written": written, "kept": kept, "bytes": path.stat().st_size, "limit": limit}


def log_problems(log: Path) -> list[str]:
    """Lines of the serve log that show an unhandled exception."""
    if not log.is_file():
        return []
    lines = log.read_text(errors="replace").splitlines()
    return [line[:300] for line in lines if PROBLEM.search(line)]


def jemalloc_path() -> str | None:
    """Where jemalloc's library is (what the image preloads for serve), if anywhere."""
    candidates = [
        "/usr/local/lib/libjemalloc.so.2",  # the image's copy
        *sorted(glob.glob("/usr/lib/*-linux-gnu/libjemalloc.so.2")),  # Debian's libjemalloc2
        "/usr/lib/libjemalloc.so.2",
        "/usr/lib64/libjemalloc.so.2",
    ]
    return next((c for c in candidates if os.path.exists(c)), None)


def allocator_env(malloc: str | None, pairs: list[str]) -> dict[str, str]:
    """serve's environment for ``--malloc`` and ``--serve-env``: jemalloc preloaded as the
    image ships it (the default where it is installed), or glibc's malloc."""
    env = serve_env(pairs)
    if malloc == "glibc" or "LD_PRELOAD" in env:
        return env
    path = jemalloc_path()
    if path is None:
        if malloc == "jemalloc":
            raise SystemExit(
                "--malloc jemalloc: no libjemalloc.so.2 (apt-get install libjemalloc2)"
            )
        print("jemalloc not installed: serve runs on glibc's malloc (apt-get install libjemalloc2)")
        return env
    return {**env, "LD_PRELOAD": path}


def serve_env(pairs: list[str]) -> dict[str, str]:
    """``--serve-env NAME=VALUE`` as a mapping (a clear error for anything else)."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--serve-env {pair!r}: want NAME=VALUE")
        out[name] = value
    return out


def write_outputs(result: SoakResult, out: Path) -> str:
    """soak.json, samples.csv, soak.png and soak.md; return the Markdown."""
    (out / "soak.json").write_text(json.dumps(result.to_json(), indent=1) + "\n")
    with (out / "samples.csv").open("w", newline="") as f:
        fields = [f.name for f in dataclasses.fields(Sample)]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(dataclasses.asdict(s) for s in result.samples)
    png = plot(result, out / "soak.png")
    text = markdown(result, png)
    (out / "soak.md").write_text(text)
    return text


def load_in_step(args: argparse.Namespace, warmup_s: float) -> InStep | None:
    """The burst's and the storm's periods in whole restart cycles (None without restarts):
    the accelerated soak's, or the nearest to the soak's intervals that the cycle allows."""
    gap = cycle_gap(args.duration, warmup_s, args.restarts)
    if gap is None:
        return None
    return accelerated(gap) if args.accelerated else in_step(gap)


def soak(args: argparse.Namespace) -> SoakResult:
    """Run the soak; every process is stopped by PID whatever happens."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    target_core, serve_core = procs.cores()
    os.sched_setaffinity(0, {target_core})  # the harness stays off loadsvc's core
    warmup = args.warmup if args.warmup is not None else min(300.0, args.duration / 6)
    step = load_in_step(args, warmup)
    config = out / "soak.yaml"
    verdicts = args.verdict_every or verdict_every(step)
    config.write_text(soak_config_text(args.scale, verdicts, step, args.accelerated))
    result = SoakResult(
        args.duration, warmup, args.scale, serve_env=allocator_env(args.malloc, args.serve_env)
    )
    result.trust_limit_ms = TRUST_LIMIT_S * 1e3
    result.schedule_period_s = schedule_period_s(step)
    result.phase_cycles = 0 if step is None else step.period_cycles
    result.netem = netem_unavailable() or "available, not used by this version"
    if result.netem != "available, not used by this version":
        result.netem = "skipped: " + result.netem
    target = SoakTarget(free_port(), target_core, out / "target.log")
    serve_port = free_port()
    serve_url = f"http://127.0.0.1:{serve_port}"
    serve_log = out / "serve.log"
    serve_log.unlink(missing_ok=True)
    serve = None
    sampler = None
    try:
        target.start()
        runner = serve_runner(args, out, warmup)
        command = [sys.executable, *runner, "--log-json", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(serve_port), "--config", str(config), "--target", target.url]
        command += ["--history-file", str(out / "history.jsonl")]
        # No API token: the soak only reads; an inherited one would not leak, but is not needed.
        env = {"LOADSVC_API_TOKEN": "", "LOADSVC_API_TOKEN_FILE": ""}
        env.update(result.serve_env)
        if args.workers > 1:
            command += ["--workers", str(args.workers)]
        serve = procs.spawn(command, serve_core, serve_log, env)
        if args.workers > 1:  # a core each: the target's core is shared with them
            _widen(serve.pid, {target_core, serve_core})
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape(serve_url, timeout=1.0)
                break
            except OSError:
                if serve.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"loadsvc serve did not start; see {serve_log}") from None
                time.sleep(0.1)
        if args.workers > 1:  # workers started before the front's affinity was widened
            for child in _children(serve.pid):
                _widen(child, {target_core, serve_core})
        t0 = time.monotonic()
        sampler = Sampler(serve_url, args.sample_every, t0, serve.pid)
        sampler.start()
        events = plan_faults(args.duration, warmup, args.restarts)
        run_faults(events, target, serve_url, args, t0, result, serve.pid)
        time.sleep(max(0.0, t0 + args.duration - time.monotonic()))
        if result.restarts:  # the state after the last restart, as the others were read
            result.cycle_ends.append(cycle_end(serve_url, t0, serve.pid))
        sampler.stopping.set()
        sampler.join(args.sample_every + 10)
        result.samples = sampler.samples
        if args.pauses:
            time.sleep(2.5)  # the pauses file is rewritten every 2 s
            shown = soak_pauses.phase_table(out / "pauses.jsonl", result.samples, t0)
            print(shown.text())
            (out / "pauses.md").write_text(shown.markdown() + "\n")
        if args.turns:
            time.sleep(5.5)  # the turns file is rewritten every 5 s
            doc = soak_turns.load(out / "turns.jsonl")
            now = time.monotonic()
            shown = soak_turns.turn_table(
                doc,
                now - args.duration + warmup,
                now,
                TRUST_LIMIT_S,
                "Long turns after the warm-up",
            )
            print(shown.text())
            (out / "turns.md").write_text(shown.markdown() + "\n")
        last = scrape(serve_url)
        result.faults_seen = faults_seen(last)
        result.history = history_kept(out / "history.jsonl", last, args.accelerated)
    finally:
        if sampler is not None:
            sampler.stopping.set()
        if serve is not None:
            code = procs.stop(serve)
            if code != 0:
                result.log_problems.append(f"loadsvc serve exited {code}")
        target.stop()
    result.log_problems += log_problems(serve_log)
    return result


def goals(result: SoakResult) -> list[tuple[str, bool]]:
    """The issue's "done when" for the soak, checked (a goal over no data is not met)."""

    def rise(attr: str) -> float:
        value = growth(result.samples, result.warmup_s, attr, result.disturbed())
        return math.inf if value is None else value

    def flat(what: str) -> bool:
        pair = n_against_2n(result, JUDGED[what])
        return pair is not None and within(pair[1], pair[2])

    past, when = past_first_period(result)
    # The process's RSS high-water (never lowered by a trim) did not rise past 2 % either.
    hwm = n_against_2n(result, JUDGED["RSS high-water"])
    hwm_held = hwm is not None and hwm[2] <= hwm[1] * (1 + WITHIN)

    n = len(result.restarts) // 2
    recoveries = [r["recovery_s"] for r in result.restarts]
    lags = [r.get("lag_p99_ms") for r in result.restarts]
    limit = result.trust_limit_ms
    return [
        # RSS is the allocators' high-water mark: judged once the load has peaked, by its
        # ceiling over whole periods of the load (the top of the trims' saw-tooth).
        (
            f"RSS ceiling after restart {2 * n} within 2 % of after restart {n}, its high-water "
            f"not 2 % higher ({when})",
            past and flat("RSS") and hwm_held,
        ),
        # At the same phase of the load every cycle (the cycle's end), over whole periods,
        # with at most the garbage of a cycle in it (shown beside it); the reading after a
        # full collection has no garbage but whatever load was in flight then: shown.
        (
            f"live heap after restart {2 * n} within 2 % of after restart {n}",
            flat("live heap"),
        ),
        # Flat: the floor of descriptors and tasks does not rise (5 % allows for noise).
        ("open descriptors flat after warm-up", rise("fds") <= 0.05),
        ("asyncio tasks flat after warm-up", rise("tasks") <= 0.05),
        (
            "every restart recovered in under 5 s",
            bool(recoveries) and all(r is not None and r < 5 for r in recoveries),
        ),
        (
            f"loop lag p99 at every restart within the trust limit ({limit:g} ms)",
            bool(lags) and all(v is not None and v <= limit for v in lags),
        ),
        ("no unhandled exception in the log", not result.log_problems),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run, print the Markdown and the goals; 0 if every goal is met."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=parse_duration, default=None, help="default 30m")
    p.add_argument("--warmup", type=parse_duration, default=None, help="default duration/6, <= 5m")
    p.add_argument("--restarts", type=int, default=10, help="target kills and restarts")
    p.add_argument("--down", type=parse_duration, default=1.0, help="target outage per restart")
    p.add_argument("--recover-timeout", type=parse_duration, default=60.0)
    p.add_argument("--scale", type=float, default=1.0, help="share of the seed's users")
    p.add_argument("--sample-every", type=parse_duration, default=5.0)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="serve --workers (more than 1: serve may use the target's core too)",
    )
    p.add_argument(
        "--verdict-every",
        default=None,
        help="verdict window of continuous scenarios (default about 1m, a whole fraction of the "
        "restart cycle)",
    )
    p.add_argument(
        "--malloc",
        choices=("jemalloc", "glibc"),
        default=None,
        help="serve's allocator: jemalloc preloaded, as the image ships it (the default where "
        "libjemalloc2 is installed), or glibc's malloc",
    )
    p.add_argument(
        "--serve-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for serve alone (repeatable), e.g. an allocator: "
        "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    )
    p.add_argument("--out", type=Path, default=OUT, help=f"output directory (default {OUT})")
    p.add_argument("--from-json", type=Path, help="re-render a saved soak.json into --out")
    p.add_argument(
        "--accelerated",
        action="store_true",
        help="many restarts in little time: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in ACCELERATED.items())
        + f", burst and storm every 4 and 2 cycles, a {ACCELERATED_HISTORY_BYTES // 1024} KiB "
        "history (each given option wins)",
    )
    p.add_argument(
        "--garbage",
        action="store_true",
        help="run serve with gc.DEBUG_SAVEALL and write what the collector found, by type, "
        "to garbage.jsonl (a diagnostic: its lag figures mean nothing)",
    )
    p.add_argument(
        "--pauses",
        type=parse_duration,
        default=None,
        metavar="PERIOD",
        help="run serve under bench/soak_pauses.py: frozen survivors switched off and on every "
        "PERIOD after the warm-up, collector pauses and lag per phase to pauses.md",
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="run serve under bench/soak_memory.py: RSS, glibc's and pymalloc's views every "
        "2 s to memory.jsonl (--tracemalloc-at S,S: top allocation sites then; costs memory)",
    )
    p.add_argument("--tracemalloc-at", default="", help=argparse.SUPPRESS)
    p.add_argument(
        "--census-at",
        default="",
        metavar="S,S",
        help="with --memory: at these seconds, the objects by type an unfreeze and a full "
        "collection free, to memory.jsonl (bench/soak_census.py; each is a sweep)",
    )
    p.add_argument(
        "--turns",
        action="store_true",
        help="run serve under bench/soak_turns.py: every loop turn over 1 ms of CPU, attributed "
        "to the collector or the callback it ran, to turns.md",
    )
    p.add_argument("--garbage-every", type=parse_duration, default=8.0, help=argparse.SUPPRESS)
    p.add_argument("--cycle", type=parse_duration, default=None, help=argparse.SUPPRESS)
    first, _ = p.parse_known_args(argv)
    if first.accelerated:
        p.set_defaults(**{k: PRESET_TYPES.get(k, str)(v) for k, v in ACCELERATED.items()})
    args = p.parse_args(argv)
    wrappers = [f"--{w}" for w in ("garbage", "memory", "pauses", "turns") if getattr(args, w)]
    if len(wrappers) > 1:  # each runs serve under its own script: one at a time
        p.error(f"{' and '.join(wrappers)}: one of them at a time")
    if args.accelerated:
        args.cycle = ACCELERATED_CYCLE_S
    if args.duration is None and args.accelerated:
        # The last cycle ends where every other was read: a tenth of a cycle past its end.
        args.duration = args.warmup + (args.restarts + RESTART_AT) * args.cycle
    elif args.duration is None:
        args.duration = 1800.0
    if args.from_json:
        doc = json.loads(args.from_json.read_text())
        doc["samples"] = [Sample(**row) for row in doc["samples"]]
        result = SoakResult(**doc)
        args.out.mkdir(parents=True, exist_ok=True)
    else:
        result = soak(args)
    print(write_outputs(result, args.out))
    checked = goals(result)
    for goal, met in checked:
        print(f"{'met' if met else 'NOT met'}: {goal}")
    for problem in result.log_problems[:10]:
        print(f"log: {problem}", file=sys.stderr)
    print(f"plot: {args.out / 'soak.png'}; samples: {args.out / 'samples.csv'}")
    return 0 if all(met for _, met in checked) else 1


if __name__ == "__main__":
    sys.exit(main())
