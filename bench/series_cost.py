"""What answering for an endpoint's time series costs the loop once its tiers have filled:
``python bench/series_cost.py [--rounds 5]``.

``/api/series`` (the status page asks for its last 15 minutes every 2 s), the HTML report at a
scheduled run's end and ``serve``'s own status build an endpoint's points as JSON-ready
columns (:meth:`loadsvc.timeseries.EndpointSeries.to_doc`), on the event loop. The tiers
keep a month (26,784 points an endpoint); they fill for a month, so what this costs grows
for a month after a 30-minute soak has ended. This fills one endpoint's series as a month of
service leaves it and times ``to_doc`` for the status page's 15 minutes, an hour, a day and
the whole month (a report, or an API reader without ``since``), the median of ``--rounds``,
against the same columns made a value at a time (Python's ``round`` per value, as ``to_doc``
did before): paired in one process, read the ratio.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import Table
from loadsvc.latency import LIVE_BUCKETS
from loadsvc.timeseries import FIELDS, EndpointSeries, Interval

T0 = 1_800_000_000.0
MONTH_S = 31 * 86_400


def month_full() -> EndpointSeries:
    """A series as a month of service leaves it: the coarse tiers full, the last hour at 1 s."""
    series = EndpointSeries()
    latency = np.zeros(LIVE_BUCKETS, np.int64)
    latency[[10, 20, 30]] = [50, 5, 1]
    for at in range(0, MONTH_S - 3600, 60):  # a point a minute fills every coarse tier
        series.add(Interval(T0 + at, 60.0, users=10, requests=100, latency=latency))
    for at in range(MONTH_S - 3600, MONTH_S):
        series.add(Interval(T0 + at, 1.0, users=10, requests=100, latency=latency))
    return series


def value_at_a_time(series: EndpointSeries, since: float | None) -> dict[str, Any]:
    """The columns as ``to_doc`` made them before: a Python ``round`` per value."""
    at, values = series.points(since)
    doc: dict[str, Any] = {"t": [round(float(t), 3) for t in at]}
    for col, name in enumerate(FIELDS):
        doc[name] = [None if math.isnan(v) else round(v, 6) for v in values[:, col].tolist()]
    return doc


def median_ms(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    series = month_full()
    end = T0 + MONTH_S
    rows = []
    for label, since in (
        ("15 minutes (the status page)", end - 900),
        ("an hour", end - 3600),
        ("a day", end - 86_400),
        ("the month (a report; no since)", None),
    ):
        points = len(series.points(since)[0])
        before = median_ms(lambda since=since: value_at_a_time(series, since), args.rounds)
        now = median_ms(lambda since=since: series.to_doc(since), args.rounds)
        rows.append([label, f"{points:,}", f"{before:.2f}", f"{now:.2f}", f"{before / now:.1f}x"])
    print(
        Table(
            f"One endpoint's series as JSON columns, a month's tiers full (median of {args.rounds};"
            " ms of wall time, on the loop)",
            ["range", "points", "a value at a time (before)", "to_doc (numpy)", "ratio"],
            rows,
        ).text()
    )


if __name__ == "__main__":
    main()
