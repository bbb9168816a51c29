"""Do readers of the service's own API raise the loop lag that times frames?

``python bench/api_readers.py`` starts the reference target (one core) and ``loadsvc serve``
(the other core) with a fixed load: the seed's two continuous scenarios, scaled (WS streams on
``/ws/market`` and paced REST pollers on the foreign-flow endpoints). It then alternates phases
with no reader and with ``--readers`` concurrent readers, each cycling over ``/api/series``,
``/metrics``, ``/api/runs`` and ``/`` (keep-alive, one request at a time each, bounded in time
and count, 127.0.0.1 only). At the end of each phase it reads the service's own lag p99 over
its last ``BUSY_SPAN_S`` seconds from ``/api/status`` (the phase lasts that long after a
settling second), and prints a table of the pairs. Goal: readers within 1 ms of none.

``--root DIR`` runs another checkout's loadsvc as the service (the one before a change, say),
so two versions are compared with the same harness. The machine's other load moves single
phases by milliseconds: read the median of the pairs, and compare in one sitting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procs
from bench.soak_config import soak_config
from bench.table import Table
from bench.target import TargetProcess, wait_until
from loadsvc.lag import BUSY_SPAN_S
from loadsvc.localstack import free_port

GOAL_MS = 1.0
SETTLE_S = 1.0
MAX_READS_PER_READER = 100_000  # a bound besides the phase's time
CONTINUOUS = ("market_stream", "foreign_flow")


def reader_paths(scenario: str) -> list[str]:
    """What one reader cycles over: the status page's reads and Prometheus's."""
    since = time.time() - 900
    return [f"/api/series?scenario={scenario}&since={since}", "/metrics", "/api/runs?limit=10", "/"]


def load_config(scale: float) -> str:
    """The seed's continuous scenarios at ``scale`` of their users, as a config file's text."""
    doc = soak_config(scale=scale, verdict_every="30s")
    doc["scenarios"] = {k: v for k, v in doc["scenarios"].items() if k in CONTINUOUS}
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class Phase:
    """One phase: how many readers, the service's lag p99 at its end, what the readers got."""

    readers: int
    lag_p99_ms: float | None = None
    reads: int = 0
    refused: int = 0  # 503: the pacer's queue was full
    seconds: float = 0.0


def get_json(url: str) -> Any:
    """A GET that is not part of the load (urllib, from the harness's thread)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


async def read_for(url: str, readers: int, seconds: float, phase: Phase) -> None:
    """``readers`` concurrent readers of the API for ``seconds`` (and at most a bounded count)."""
    deadline = time.monotonic() + seconds

    async def one(session: aiohttp.ClientSession) -> None:
        for i in range(MAX_READS_PER_READER):
            if time.monotonic() >= deadline:
                return
            paths = reader_paths(CONTINUOUS[0])
            async with session.get(url + paths[i % len(paths)]) as resp:
                await resp.read()
                if resp.status == 503:
                    phase.refused += 1
                else:
                    phase.reads += 1

    connector = aiohttp.TCPConnector(limit=readers)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one(session) for _ in range(readers)))


def run_phase(url: str, readers: int, span_s: float = BUSY_SPAN_S) -> Phase:
    """Hold ``readers`` for a settling second plus ``span_s``, then read the lag p99 (over the
    service's last ``BUSY_SPAN_S``: a shorter span, for a smoke run, mixes in the phase before)."""
    phase = Phase(readers)
    span = SETTLE_S + span_s
    buckets_before = _lag_buckets(url)
    started = time.monotonic()
    if readers:
        asyncio.run(read_for(url, readers, span, phase))
    else:
        time.sleep(span)  # a phase of a fixed length, not a wait for a condition
    phase.seconds = time.monotonic() - started
    generator = get_json(url + "/api/status").get("generator") or {}
    phase.lag_p99_ms = generator.get("loop_lag_p99_ms")
    if phase.lag_p99_ms is None:  # a loadsvc before the generator's state was in the status
        phase.lag_p99_ms = _bucket_p99_ms(buckets_before, _lag_buckets(url))
    return phase


def _lag_buckets(url: str) -> dict[float, float]:
    """The event-loop lag histogram's cumulative buckets (le -> count) from /metrics."""
    out: dict[float, float] = {}
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("loadsvc_event_loop_lag_seconds_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out[float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def _bucket_p99_ms(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound of the bucket holding the phase's p99: coarse (buckets 1, 2.5, 5, 10,
    25, 50, 100 ms...), for an older loadsvc whose status has no exact lag p99."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    if not delta or delta[-1][1] <= 0:
        return None
    need = 0.99 * delta[-1][1]
    return next(le * 1000 for le, n in delta if n >= need)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(pairs: list[tuple[Phase, Phase]], readers: int, note: str) -> Table:
    """One row per pair and a median row: lag p99 without and with readers."""
    rows = []
    diffs = []
    for i, (none, some) in enumerate(pairs, 1):
        diff = None
        if none.lag_p99_ms is not None and some.lag_p99_ms is not None:
            diff = some.lag_p99_ms - none.lag_p99_ms
            diffs.append(diff)
        rows.append(
            [
                f"pair {i}",
                _fmt(none.lag_p99_ms),
                _fmt(some.lag_p99_ms),
                "-" if diff is None else f"{diff:+.2f}",
                f"{some.reads / some.seconds:.0f}" if some.seconds else "-",
                str(some.refused),
            ]
        )
    median = statistics.median(diffs) if diffs else None
    nones = [p.lag_p99_ms for p, _ in pairs if p.lag_p99_ms is not None]
    somes = [p.lag_p99_ms for _, p in pairs if p.lag_p99_ms is not None]
    rows.append(
        [
            "median",
            _fmt(statistics.median(nones) if nones else None),
            _fmt(statistics.median(somes) if somes else None),
            "-" if median is None else f"{median:+.2f}",
            "",
            "",
        ]
    )
    verdict = "met" if goal_met(pairs) else "NOT met"
    return Table(
        f"Loop lag p99 of serve (ms, over {BUSY_SPAN_S:g} s) with 0 and {readers} API readers",
        ["", "0 readers", f"{readers} readers", "difference", "reads/s", "refused"],
        rows,
        f"goal: {readers} readers within {GOAL_MS:g} ms of none (median of pairs): {verdict}. "
        + note,
    )


def measure(args: argparse.Namespace, workdir: Path) -> list[tuple[Phase, Phase]]:
    """Start the target and the service, then the alternated phases; stop both by PID."""
    target_core, service_core = procs.cores()
    config = workdir / "config.yaml"
    config.write_text(load_config(args.scale))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"PYTHONPATH": str(Path(args.root).resolve())} if args.root else None
    with TargetProcess(target_core, workdir / "target.log") as target:
        serve = ["serve", "--config", str(config), "--target", target.url, "--host", "127.0.0.1"]
        history = ["--history-file", str(workdir / "history.jsonl"), "--port", str(port)]
        service = procs.spawn(
            # -P: loadsvc from PYTHONPATH (--root), not from the working directory.
            [sys.executable, "-P", "-m", "loadsvc", *serve, *history],
            service_core,
            workdir / "serve.log",
            env,
        )
        try:
            wait_until(lambda: _answers(url), 30, "loadsvc serve answering")
            time.sleep(args.warmup)  # the users' ramp-up: a fixed length, then the phases
            pairs = []
            for i in range(args.pairs):
                # Alternate which comes first, so a drift of the machine's load cancels out.
                order = (0, args.readers) if i % 2 == 0 else (args.readers, 0)
                done = {n: run_phase(url, n, args.span) for n in order}
                pairs.append((done[0], done[args.readers]))
                lags = f"{done[0].lag_p99_ms} / {done[args.readers].lag_p99_ms} ms"
                print(f"pair {i + 1}: {lags}", file=sys.stderr)
            return pairs
        finally:
            procs.stop(service)


def _answers(url: str) -> bool:
    try:
        get_json(url + "/healthz")
    except OSError:
        return False
    return True


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--scale", type=float, default=0.2, help="of the seed's users")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before the phases")
    parser.add_argument("--span", type=float, default=BUSY_SPAN_S, help="seconds per phase")
    parser.add_argument("--root", help="a checkout whose loadsvc runs as the service")
    parser.add_argument("--note", default="", help="printed under the table")
    return parser.parse_args(argv)


def goal_met(pairs: list[tuple[Phase, Phase]]) -> bool:
    """The median difference of the pairs is at most GOAL_MS (no pair measured: not met)."""
    diffs = [
        b.lag_p99_ms - a.lag_p99_ms
        for a, b in pairs
        if a.lag_p99_ms is not None and b.lag_p99_ms is not None
    ]
    return bool(diffs) and statistics.median(diffs) <= GOAL_MS


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; exit 0 when the goal is met, 1 otherwise."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="api-readers-") as tmp:
        pairs = measure(args, Path(tmp))
    print(table(pairs, args.readers, args.note).text())
    return 0 if goal_met(pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
