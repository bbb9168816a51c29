"""The bounded per-second series: tiers, downsampling, quantiles, the memory bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadsvc.latency import LIVE_BUCKETS, LatencySamples
from loadsvc.timeseries import FIELDS, TIERS, EndpointSeries, Interval, Tier, quantile_of


def _latencies(*values: float) -> np.ndarray:
    samples = LatencySamples()
    for v in values:
        samples.add(v)
    return np.array(samples.live_counts, dtype=np.int64)


def _second(
    at: float, requests: int = 10, users: int = 5, latency: np.ndarray | None = None
) -> Interval:
    return Interval(ended_at=at, span_s=1.0, users=users, requests=requests, latency=latency)


def test_quantile_of_matches_the_live_histogram() -> None:
    """Quantiles from bucket counts agree with LatencySamples.live_quantile (same buckets)."""
    values = [0.001 * i for i in range(1, 201)]
    samples = LatencySamples()
    for v in values:
        samples.add(v)
    counts = np.array(samples.live_counts, dtype=np.int64)
    for q in (0.5, 0.95, 0.99):
        assert quantile_of(counts, q) == samples.live_quantile(q)
    assert math.isnan(quantile_of(np.zeros(LIVE_BUCKETS, np.int64), 0.5))


def test_every_sample_is_a_point_in_the_finest_tier() -> None:
    """Each second is its own point, in order, with its counts and quantiles."""
    series = EndpointSeries()
    for i in range(5):
        series.add(_second(1000.0 + i, requests=i, latency=_latencies(0.01 * (i + 1))))
    doc = series.to_doc()
    assert doc["t"] == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
    assert doc["requests"] == [0, 1, 2, 3, 4]
    assert doc["p99_s"][4] == pytest_approx(0.05)
    assert set(FIELDS) <= set(doc)


def pytest_approx(x: float) -> object:
    return pytest.approx(x, rel=0.01)


def test_old_points_come_from_coarser_tiers_with_merged_histograms() -> None:
    """Past the finest tier's reach, points are 10 s sums whose p99 is of the whole span."""
    series = EndpointSeries((Tier(0, 20), Tier(10, 100)))
    for i in range(60):
        # One slow second in each ten, 2 % of the span's samples: the coarse p99 is slow.
        slow = i % 10 == 3
        latency = _latencies(*([0.5] * 20 if slow else [0.01] * 99))
        series.add(_second(10_000.0 + i, requests=1, latency=latency))
    at, rows = series.points()
    spans = rows[:, FIELDS.index("span_s")]
    assert list(spans[-20:]) == [1.0] * 20  # the last 20 s at 1 s
    older = at < at[-20]
    assert older.any() and all(s == 10.0 for s in spans[older])
    assert all(r == 10 for r in rows[older][:, FIELDS.index("requests")])
    p99 = rows[older][:, FIELDS.index("p99_s")]
    assert all(abs(v - 0.5) < 0.01 for v in p99)
    p50 = rows[older][:, FIELDS.index("p50_s")]
    assert all(abs(v - 0.01) < 0.001 for v in p50)
    assert list(at) == sorted(at)


def test_gauges_are_time_weighted_means_when_downsampled() -> None:
    """Users over a coarse point are the mean over its span, not the last value."""
    series = EndpointSeries((Tier(0, 2), Tier(10, 10)))
    for i in range(30):
        series.add(_second(20_000.0 + i, users=0 if i % 10 < 5 else 10))
    _, rows = series.points()
    coarse = rows[:, FIELDS.index("span_s")] == 10.0
    assert coarse.sum() >= 1
    assert all(u == 5.0 for u in rows[coarse][:, FIELDS.index("users")])


def test_a_month_of_seconds_stays_within_the_fixed_bound() -> None:
    """Four weeks of 1 s samples keep at most the tiers' capacity, in bounded bytes."""
    series = EndpointSeries()
    before = series.nbytes
    month = 28 * 86_400
    # A point a minute is what the coarse tiers see; the last hour and more at 1 s.
    for i in [*range(0, month - 4000, 60), *range(month - 4000, month)]:
        series.add(Interval(ended_at=float(i), span_s=1.0, requests=1))
    assert series.nbytes == before < 1_400_000
    assert len(series) <= sum(t.capacity for t in TIERS)
    at, _ = series.points()
    assert at[0] < 86_400 * 2  # the start of the run is still there, coarsely
    assert list(at) == sorted(at)


def test_since_returns_only_newer_points() -> None:
    """``since`` cuts the points at that time (for incremental polling)."""
    series = EndpointSeries()
    for i in range(10):
        series.add(_second(100.0 + i))
    assert series.to_doc(since=105.0)["t"] == [106.0, 107.0, 108.0, 109.0]


def test_the_document_rounds_and_leaves_gaps_as_a_value_at_a_time_would() -> None:
    """to_doc rounds with numpy a column at a time (a month of points is then a few ms of the
    loop): the values are Python's round of each float32 to 6 places (times to 3), NaN is None
    wherever it is, a column without any value is all None, and the types are plain floats."""
    rng = np.random.default_rng(5)
    series = EndpointSeries((Tier(0, 500),))
    for i in range(400):
        lat = None if i % 7 == 0 else _latencies(*rng.uniform(0.0001, 2.0, 20).tolist())
        series.add(
            Interval(
                ended_at=1_800_000_000.0 + i + float(rng.uniform(0, 0.9999)),
                span_s=float(rng.uniform(0.5, 1.5)),
                users=int(rng.integers(0, 900)),
                requests=int(rng.integers(0, 10**6)),
                latency=lat,
            )
        )
    at, values = series.points()
    doc = series.to_doc()
    assert doc["t"] == pytest.approx([round(float(t), 3) for t in at], abs=1e-6)
    for name in FIELDS:
        expected = [
            None if math.isnan(v) else round(v, 6) for v in values[:, FIELDS.index(name)].tolist()
        ]
        got = doc[name]
        assert [v is None for v in got] == [v is None for v in expected], name
        assert [v for v in got if v is not None] == pytest.approx(
            [v for v in expected if v is not None], abs=1e-9
        ), name
        assert all(v is None or type(v) is float for v in got)
    assert any(v is None for v in doc["p99_s"]) and any(v is not None for v in doc["p99_s"])
    assert doc["reconnect_p95_s"] == [None] * 400
