"""Run statistics: windows, connections, deferred percentiles."""

from __future__ import annotations

from loadsvc.runstats import EndpointStats, with_percentiles


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
    import loadsvc.latency as rs

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
