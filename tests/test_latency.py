"""Latency samples: exact percentiles, the reservoir, the live histogram."""

from __future__ import annotations

import math
import random

from loadsvc.latency import LatencySamples, nearest_rank


def test_nearest_rank_is_the_smallest_value_covering_the_quantile() -> None:
    """p95 of 1..100 is 95; p50 of 1..4 is 2; empty data has no quantile."""
    assert nearest_rank([float(i) for i in range(1, 101)], 0.95) == 95.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert nearest_rank([], 0.5) is None


def test_quantile_at_most_limit_iff_fraction_at_or_below_limit() -> None:
    """p95 <= limit exactly when at least 95% of samples are <= limit (the alert rules' form)."""
    rng = random.Random(7)
    for _ in range(200):
        s = LatencySamples()
        for _ in range(rng.randint(1, 300)):
            s.add(rng.choice([0.1, 0.2, 0.2000001, 0.3, rng.random()]))
        p95 = s.quantiles((0.95,))[0.95]
        frac = s.fraction_at_or_below(0.2)
        assert p95 is not None and frac is not None
        assert (p95 <= 0.2) == (frac >= 0.95)


def test_live_quantile_is_within_two_percent() -> None:
    """The cheap live histogram estimates a quantile within about 1-2 %."""
    s = LatencySamples()
    rng = random.Random(1)
    for _ in range(20000):
        s.add(rng.lognormvariate(-3, 0.5))
    exact = s.quantiles((0.99,))[0.99]
    live = s.live_quantile(0.99)
    assert exact is not None and live is not None
    assert abs(live - exact) / exact < 0.02


def test_reservoir_keeps_memory_bounded(monkeypatch: object) -> None:
    """Past MAX_SAMPLES the samples stay a bounded, uniform reservoir."""
    import loadsvc.latency as rs

    setattr(rs, "MAX_SAMPLES", 1000)  # noqa: B010 - patched for this test only
    try:
        s = LatencySamples(random.Random(3))
        for i in range(10000):
            s.add(float(i))
        assert len(s.samples) == 1000
        assert s.count == 10000
        # A uniform sample of 0..9999 has its median near 5000, not near 500.
        median = s.quantiles((0.5,))[0.5]
        assert median is not None and 4000 < median < 6000
    finally:
        setattr(rs, "MAX_SAMPLES", 2_000_000)  # noqa: B010


def test_exact_quantiles_equal_nearest_rank_of_the_sorted_samples() -> None:
    """The partition-based quantiles are exactly the nearest-rank values of a full sort."""
    rng = random.Random(5)
    for _ in range(200):
        s = LatencySamples()
        values = [rng.choice([0.1, 0.2, rng.random()]) for _ in range(rng.randint(1, 400))]
        for v in values:
            s.add(v)
        qs = (0.5, 0.9, 0.95, 0.99, 1.0)
        assert s.quantiles(qs) == {q: nearest_rank(sorted(values), q) for q in qs}


def test_live_histogram_binned_in_bulk_equals_binning_each_sample(monkeypatch: object) -> None:
    """The live buckets and ``within`` read after many adds (binned with numpy) equal binning
    each sample as it came, across the switch to a reservoir, infinite values included."""
    import loadsvc.latency as rs

    rng = random.Random(5)
    values = [math.exp(rng.uniform(math.log(1e-7), math.log(1e3))) for _ in range(5000)]
    values += [math.inf, 1e-5, 0.0, -1.0, 0.1]
    setattr(rs, "MAX_SAMPLES", 3000)  # noqa: B010 - patched for this test only
    try:
        s = LatencySamples(random.Random(3), limit=0.1)
        expected = [0] * rs.LIVE_BUCKETS
        for i, v in enumerate(values):
            s.add(v)
            expected[rs._live_bucket(v)] += 1
            if i == 1000:
                assert s.live_counts == expected  # a read mid-window catches up
        assert s.live_counts == expected
        assert s.within == sum(1 for v in values if v <= 0.1)
        assert sum(s.histogram()[1]) == len(values)
    finally:
        setattr(rs, "MAX_SAMPLES", 2_000_000)  # noqa: B010


def test_live_bucket_counts_bins_each_value_where_live_bucket_puts_it() -> None:
    """The shared bulk binning equals binning one by one, for tiny, NaN, negative and infinite values."""
    import numpy as np

    import loadsvc.latency as rs

    rng = random.Random(11)
    values = [math.exp(rng.uniform(math.log(1e-7), math.log(1e4))) for _ in range(3000)]
    values += [math.inf, math.nan, -1.0, 0.0, 1e-5, 1e-5 * 1.01]
    expected = [0] * rs.LIVE_BUCKETS
    for v in values:
        expected[rs._live_bucket(v)] += 1
    assert rs.live_bucket_counts(np.array(values)).tolist() == expected
