"""What judging one verdict window against its history costs serve's event loop.

``python -m bench.judge``: a real run history of N windows (each with a 2,000-sample
latency histogram) and serve's RegressionJudge; per N, the milliseconds one judgement
takes (read the history, check every record, pick the recent baseline, the anchor
and the trend, judge), the median of 7. It runs on the event loop once per window
and scenario, so it is what the loop lag of that moment may grow by.
"""

from __future__ import annotations

import math
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bench.table import Table
from loadsvc.latency import LatencySamples
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.report import histogram_doc
from loadsvc.service.history import RunHistory
from loadsvc.service.regressions import RegressionJudge

T0 = 1_795_392_000.0
SIZES = (100, 1000, 2500)


def window(i: int, rng: random.Random) -> dict[str, Any]:
    """A passed 5-minute window of one endpoint with 2,000 samples around 40 ms."""
    samples = LatencySamples()
    for _ in range(2000):
        samples.add(0.040 * math.exp(rng.gauss(0.0, 0.3)))
    q = samples.quantiles((0.5, 0.95, 0.99))
    ep = {
        "endpoint": "/api/a", "kind": "http", "count": 2000, "errors": 0, "events": 2000,
        "error_rate": 0.0, "latency_histogram": histogram_doc(samples.histogram()),
        **{f"p{round(k * 100)}_ms": (v or 0.0) * 1000 for k, v in q.items()},
    }  # fmt: skip
    at = T0 + 300.0 * i
    return {
        "scenario": "s", "run_id": "w", "window": i, "passed": True, "result": "passed",
        "started_at": at, "ended_at": at + 300.0, "fingerprint": "f", "endpoints": [ep],
    }  # fmt: skip


def judge_ms(size: int, work: Path) -> float:
    """The median time of one judgement over a history of ``size`` windows."""
    rng = random.Random(size)
    template = window(0, rng)  # one window's samples, reused: building histograms is slow
    docs = [{**template, "window": i, "started_at": T0 + 300.0 * i,
             "ended_at": T0 + 300.0 * (i + 1)} for i in range(size + 8)]  # fmt: skip
    path = work / f"runs-{size}.jsonl"
    history = RunHistory(path, 1 << 30, 1e9, clock=lambda: T0 + 300.0 * (size + 9))
    judge = RegressionJudge(history, Recorder(create_metrics(CollectorRegistry())))
    for doc in docs[:size]:  # a history of healthy, compared windows (written, not judged)
        history.append({**doc, "regression": {"state": "ok"}})
    took = []
    for doc in docs[size:][:7]:
        started = time.perf_counter()
        judge.judge(dict(doc))
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


def main() -> None:
    """Print the table."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = [[str(n), f"{judge_ms(n, Path(tmp)):.1f}"] for n in SIZES]
    print(
        Table(
            "One window judged against its history (serve's RegressionJudge)",
            ("history windows", "ms per judgement"),
            rows,
        ).text()
    )


if __name__ == "__main__":
    main()
