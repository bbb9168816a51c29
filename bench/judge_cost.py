"""What judging a verdict window against the run history costs the loop, by history size:
``python bench/judge_cost.py [--sizes 250,1800,4000] [--rounds 5]``.

``serve`` judges every finished run and verdict window against its scenario's past
(:class:`loadsvc.service.regressions.RegressionJudge`), on the event loop. The history is kept
to ``max_bytes`` (10 MiB by default: ~1,800 windows of the seed's size, a week of 5-minute
windows of a few scenarios), so whatever the judge does per record grows with it until that
cap, long after a 30-minute soak has ended. This writes a history of ``--sizes`` records of
the seed's shape (four scenarios, the windows of two continuous ones and the runs of two
scheduled ones, ~2-4 KB each with their latency histograms, thresholds and findings; the soak's
real windows are 2.8-5.8 KB), loads it as ``serve`` does and
times one judgement per scenario (the median over ``--rounds``) two ways:

- ``fresh judge``: a judge that has seen none of the records (``serve`` just started, and
  what every window cost before the judge kept what it made of each record): every record of
  the scenario parsed and checked;
- ``records seen``: the same judge again, as at every later window: only what is chosen is
  parsed.

Paired in one process: compare the ratio, not the milliseconds (the machine's speed moves).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

if __package__ in (None, ""):  # run as a script: the repository's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import Table
from loadsvc.latency import LatencySamples
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.report import histogram_doc
from loadsvc.service.history import RunHistory
from loadsvc.service.regressions import RegressionJudge

T0 = 1_795_392_000.0
SCENARIOS = {  # scenario: (endpoints, share of the records): the seed's mix
    "market_stream": (["/ws/market"], 0.4),
    "foreign_flow": (["/api/market/foreign-detail"], 0.4),
    "market_open_burst": (["/api/market/snapshot", "/api/market/alerts", "/ws/market"], 0.1),
    "reconnect_storm": (["/ws/market"], 0.1),
}


def endpoint(name: str, rng: random.Random) -> dict[str, Any]:
    """One endpoint of a record, with the histogram the real samples make."""
    samples = LatencySamples()
    level = 0.004 * rng.uniform(0.9, 1.1)
    for _ in range(2000):
        samples.add(level * math.exp(rng.gauss(0.0, 1.0)))
    qs = samples.quantiles((0.5, 0.95, 0.99))
    return {
        "endpoint": name,
        "kind": "ws" if name.startswith("/ws") else "http",
        "count": 2000,
        "errors": 0,
        "events": 2000,
        "error_rate": 0.0,
        **{f"p{int(q * 100)}_ms": (qs[q] or 0.0) * 1000 for q in (0.5, 0.95, 0.99)},
        "latency_histogram": histogram_doc(samples.histogram()),
    }


def history(path: Path, size: int, rng: random.Random) -> None:
    """``size`` passed records, 74 s apart, the scenarios in the seed's mix."""
    names = list(SCENARIOS)
    weights = [SCENARIOS[n][1] for n in names]
    lines = []
    for i in range(size):
        scenario = rng.choices(names, weights)[0]
        ended = T0 + 74.0 * i
        doc = {
            "scenario": scenario,
            "run_id": f"run-{scenario}",
            "window": i,
            "passed": True,
            "result": "passed",
            "started_at": ended - 74.0,
            "ended_at": ended,
            "fingerprint": "f1",
            "endpoints": [endpoint(e, rng) for e in SCENARIOS[scenario][0]],
            "loop_lag_p99_ms": 4.0,
            "loop_lag_limit_ms": 10.0,
            "thresholds": [
                {"endpoint": e, "metric": m, "limit": 250.0, "value": 12.5, "passed": True}
                for e in SCENARIOS[scenario][0]
                for m in ("p95", "p99", "error_ratio", "missed_ratio")
            ],
            "regression": {
                "state": "ok",
                "headline": "no regression in the 6 metric(s) compared (median of 7 runs)",
                "findings": [
                    {
                        "endpoint": e,
                        "metric": m,
                        "value": 12.5,
                        "baseline": 11.0,
                        "regressed": False,
                        "said": f"{e} {m} 12.5 ms vs baseline 11.0 ms: +14 %",
                    }
                    for e in SCENARIOS[scenario][0]
                    for m in ("p50", "p95", "p99", "error_ratio", "message_rate")
                ],
            },
        }
        lines.append(orjson.dumps(doc))
    path.write_bytes(b"\n".join(lines) + b"\n")


def judge_ms(judge: RegressionJudge, scenario: str, at: float, rng: random.Random) -> float:
    """One judgement of a new window of ``scenario``, in ms."""
    doc = {
        "scenario": scenario,
        "run_id": f"run-{scenario}",
        "window": -1,
        "passed": True,
        "result": "passed",
        "started_at": at - 74.0,
        "ended_at": at,
        "fingerprint": "f1",
        "endpoints": [endpoint(e, rng) for e in SCENARIOS[scenario][0]],
    }
    start = time.perf_counter()
    judge.judge(doc)
    return (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="250,1800,4000")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    rng = random.Random(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"runs-{size}.jsonl"
            history(path, size, rng)
            now = T0 + 74.0 * size

            def clock(now: float = now) -> float:
                return now

            runs = RunHistory(path, max_bytes=1 << 30, max_age_s=1e9, clock=clock)
            for scenario in SCENARIOS:
                fresh, seen = [], []
                for _ in range(args.rounds):
                    recorder = Recorder(create_metrics(CollectorRegistry()))
                    judge = RegressionJudge(runs, recorder, clock=clock)
                    fresh.append(judge_ms(judge, scenario, now, rng))
                    seen.append(judge_ms(judge, scenario, now, rng))
                f, s = statistics.median(fresh), statistics.median(seen)
                rows.append(
                    [
                        f"{size:,} ({runs.size_bytes / 2**20:.1f} MiB)",
                        scenario,
                        str(len(runs.entries(scenario))),
                        f"{f:.2f}",
                        f"{s:.2f}",
                        f"{f / s:.1f}x",
                    ]
                )
    print(
        Table(
            "Judging a window against the run history, on the loop (median of "
            f"{args.rounds}; ms of wall time)",
            [
                "records kept",
                "scenario",
                "its records",
                "fresh judge (every record parsed)",
                "records seen",
                "ratio",
            ],
            rows,
            note="fresh judge: serve just started, and every window before the judge kept what "
            "it made of each record",
        ).text()
    )


if __name__ == "__main__":
    main()
