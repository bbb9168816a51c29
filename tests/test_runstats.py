"""Run statistics: exact percentiles, live estimates, windows."""

from __future__ import annotations

import math
import random

from loadsvc.runstats import EndpointStats, LatencySamples, nearest_rank, with_percentiles


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
    import loadsvc.runstats as rs

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


def test_ws_window_counts_connection_seconds_and_events() -> None:
    """Connection-seconds integrate open connections; events include connects and failures."""
    st = EndpointStats("/ws/market", "ws", "", now=0.0)
    st.connection_opened(0.0)
    st.connection_opened(1.0)
    for _ in range(8):
        st.add_outcome("ok", False)
    st.add_outcome("invalid", True)
    st.connection_failed()
    st.connection_closed(3.0)
    s = st.summary(4.0)
    # one connection open 0..4 (4 s) + one open 1..3 (2 s)
    assert s.connection_seconds == 6.0
    assert s.events == 9 + 2 + 1
    assert s.errors == 2
    assert s.messages_per_second_per_connection == 9 / 6.0


def test_roll_starts_an_empty_window_but_keeps_open_connections() -> None:
    """A verdict window closes with its data; the next one starts empty with connections still open."""
    st = EndpointStats("/ws/market", "ws", "", now=0.0)
    st.connection_opened(0.0)
    st.add_outcome("ok", False)
    st.latency.add(0.01)
    first, samples = st.roll(10.0)
    assert first.count == 1 and list(samples.samples) == [0.01]
    second = st.summary(20.0)
    assert second.count == 0
    assert second.connection_seconds == 10.0


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


def test_roll_defers_percentiles_and_with_percentiles_completes_them() -> None:
    """roll only swaps the window out; with_percentiles fills p50..max from its samples."""
    st = EndpointStats("/api/x", "http", "GET", now=0.0)
    for v in (0.3, 0.1, 0.2, 0.4):
        st.add_outcome("ok", False)
        st.latency.add(v)
    rolled, samples = st.roll(1.0)
    assert rolled.count == 4 and rolled.p50_s is None and rolled.max_s is None
    done = with_percentiles(rolled, samples)
    assert (done.p50_s, done.p95_s, done.max_s) == (0.2, 0.4, 0.4)


def test_samples_at_or_below_the_limit_are_counted_as_they_arrive() -> None:
    """The count at the threshold's limit is kept across windows and covers every sample."""
    import loadsvc.runstats as rs

    st = EndpointStats("/api/x", "http", "GET", now=0.0)
    st.judge_latency_at(0.2)
    setattr(rs, "MAX_SAMPLES", 10)  # noqa: B010 - a small reservoir for this test only
    try:
        for i in range(100):
            st.latency.add(0.1 if i % 4 else 0.3)  # 75 of 100 at or below 0.2
        assert st.latency.within == 75 and st.latency.count_at_or_below(0.2) == 75
        assert len(st.latency.samples) == 10
        st.roll(1.0)
        st.latency.add(0.2)
        assert st.latency.count_at_or_below(0.2) == 1  # same limit in the next window
    finally:
        setattr(rs, "MAX_SAMPLES", 2_000_000)  # noqa: B010


def test_live_histogram_binned_in_bulk_equals_binning_each_sample(monkeypatch: object) -> None:
    """The live buckets and ``within`` read after many adds (binned with numpy) equal binning
    each sample as it came, across the switch to a reservoir, infinite values included."""
    import loadsvc.runstats as rs

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
