"""Verdicts: every endpoint judged against the thresholds that apply to it."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from loadsvc.config import ConfigError, parse_config
from loadsvc.config.spec import LatencyThreshold, ScenarioThresholds, StallThreshold, Thresholds
from loadsvc.lag import ReadTiming
from loadsvc.latency import LatencySamples, nearest_rank, rank_shift
from loadsvc.runstats import EndpointStats, EndpointSummary
from loadsvc.verdict import judge, trust_limit
from loadsvc.window import RolledWindow, judge_window


def _http(values: list[float], errors: int = 0, endpoint: str = "/api/x") -> EndpointStats:
    st = EndpointStats(endpoint, "http", "GET", now=0.0)
    for v in values:
        st.add_outcome("ok", False)
        st.latency.add(v)
    for _ in range(errors):
        st.add_outcome("http_error", True)
    return st


def test_p95_exactly_at_the_limit_passes_and_just_above_fails() -> None:
    """95 of 100 samples at the limit pass; one more above it breaches."""
    at = _http([0.2] * 95 + [1.0] * 5)
    above = _http([0.2] * 94 + [1.0] * 6)
    v_at = judge(ScenarioThresholds(), [at.roll(1.0)])
    v_above = judge(ScenarioThresholds(), [above.roll(1.0)])
    assert v_at.passed
    assert not v_above.passed
    (breach,) = v_above.breached()
    assert breach.name == "http_latency" and breach.value == 1.0 and breach.limit == 0.2


def test_error_ratio_above_the_limit_breaches() -> None:
    """2 errors in 100 requests is 2 %, above the 1 % default."""
    v = judge(ScenarioThresholds(), [_http([0.01] * 98, errors=2).roll(1.0)])
    (breach,) = v.breached()
    assert breach.name == "error_ratio"
    assert breach.value == 0.02


def test_endpoint_override_applies_only_to_its_endpoint() -> None:
    """A per-endpoint override replaces the scenario's thresholds for that endpoint alone."""
    loose = Thresholds(http_latency=LatencyThreshold(0.95, 0.5))
    t = ScenarioThresholds(endpoints=(("/slow", loose),))
    slow = _http([0.3] * 100, endpoint="/slow")
    fast = _http([0.3] * 100, endpoint="/fast")
    v = judge(t, [slow.roll(1.0), fast.roll(1.0)])
    assert [(j.endpoint, j.passed) for j in v.judgements if j.name == "http_latency"] == [
        ("/slow", True),
        ("/fast", False),
    ]


def test_ws_endpoints_are_judged_on_delivery_p99() -> None:
    """A WS endpoint uses the delivery-latency threshold (p99 <= 100 ms by default)."""
    st = EndpointStats("/ws/market", "ws", "", now=0.0)
    for v in [0.01] * 98 + [0.15] * 2:
        st.add_outcome("ok", False)
        st.latency.add(v)
    (lat, err) = judge(ScenarioThresholds(), [st.roll(1.0)]).judgements
    assert lat.name == "ws_delivery_latency" and lat.quantile == 0.99
    assert lat.value == 0.15 and not lat.passed
    assert err.passed


def test_no_samples_is_no_data_and_fails_naming_the_endpoint() -> None:
    """An endpoint without a single latency sample is judged no_data, which fails the verdict."""
    v = judge(ScenarioThresholds(), [_http([]).roll(1.0)])
    assert not v.passed
    (failed,) = v.breached()
    assert failed.state == "no_data" and failed.name == "http_latency"
    assert failed.describe() == "/api/x http_latency p95: no data (0 of min 1 samples) FAILED"


def test_fewer_than_min_samples_is_no_data_and_zero_turns_it_off() -> None:
    """min_samples 5 with 3 samples is no_data; min_samples 0 passes an empty window."""
    strict = ScenarioThresholds(Thresholds(http_latency=LatencyThreshold(0.95, 0.2, 5)))
    off = ScenarioThresholds(Thresholds(http_latency=LatencyThreshold(0.95, 0.2, 0)))
    (lat, _) = judge(strict, [_http([0.01] * 3).roll(1.0)]).judgements
    assert lat.state == "no_data" and lat.samples == 3 and lat.value == 0.01
    assert "(3 of min 5 samples)" in lat.describe()
    assert judge(off, [_http([]).roll(1.0)]).passed


def test_ws_stream_of_status_frames_only_fails_as_no_data() -> None:
    """Heartbeats while data stopped: frames arrived but no delivery latency, so the run fails."""
    st = EndpointStats("/ws/market", "ws", "", now=0.0)
    st.connection_opened(0.0)
    for _ in range(20):
        st.status_messages += 1
        st.add_outcome("status", False)
    v = judge(ScenarioThresholds(), [st.roll(10.0)])
    assert [(j.name, j.state) for j in v.judgements] == [
        ("ws_delivery_latency", "no_data"),
        ("error_ratio", "passed"),
    ]


def test_count_at_the_limit_agrees_with_the_nearest_rank_percentile() -> None:
    """Judging from the count kept at the limit gives the same state as sorting the samples."""
    rng = random.Random(11)
    for _ in range(300):
        values = [
            rng.choice([0.1, 0.2, 0.2000001, 0.3, rng.random()]) for _ in range(rng.randint(1, 200))
        ]
        q = rng.choice([0.5, 0.9, 0.95, 0.99])
        st = EndpointStats("/api/x", "http", "GET", now=0.0)
        st.judge_latency_at(0.2)
        for v in values:
            st.add_outcome("ok", False)
            st.latency.add(v)
        t = ScenarioThresholds(Thresholds(http_latency=LatencyThreshold(q, 0.2)))
        (lat, _) = judge(t, [st.roll(1.0)]).judgements
        exact = nearest_rank(sorted(values), q)
        assert exact is not None and lat.value == exact
        assert lat.passed == (exact <= 0.2)


def test_no_events_at_all_fails_once_not_twice() -> None:
    """An endpoint that saw nothing fails on latency (no data), not again on its error ratio."""
    v = judge(ScenarioThresholds(), [_http([]).roll(1.0)])
    assert [j.name for j in v.breached()] == ["http_latency"]


def test_endpoints_without_users_on_this_shard_are_not_judged() -> None:
    """An endpoint that had no user on this shard (idle) is left out rather than failed."""
    v = judge(ScenarioThresholds(), [_http([]).roll(1.0)], idle=frozenset({"/api/x"}))
    assert v.judgements == () and v.passed


def _ws_summary(**changes: object) -> EndpointSummary:
    st = EndpointStats("/ws/market", "ws", "", now=0.0)
    for _ in range(50):
        st.add_outcome("ok", False)
        st.latency.add(0.01)
    summary, _ = st.roll(1.0)
    return replace(summary, **changes)  # type: ignore[arg-type]


def _judge_ws(summary: EndpointSummary) -> tuple[str, ...]:
    samples = LatencySamples()
    for _ in range(50):
        samples.add(0.01)
    v = judge(ScenarioThresholds(), [(summary, samples)])
    return tuple(j.describe() for j in v.breached())


def test_skewed_frames_fail_naming_clock_skew_and_the_offset() -> None:
    """Frames stamped after arrival fail a clock_skew judgement with the offset and NTP hint."""
    s = _ws_summary(outcomes=(("ok", 50), ("skewed", 7)), clock_offset_min_s=-2.5)
    (line,) = _judge_ws(s)
    assert line.startswith("/ws/market clock_skew: 7 frames stamped after their arrival")
    assert "clock offset min -2.500 s" in line and "clock sync (NTP)" in line


def test_stamps_in_ms_read_as_seconds_point_at_timestamp_unit() -> None:
    """An offset of about -1.7e12 s is a unit mix-up: the judgement says to check timestamp_unit."""
    s = _ws_summary(outcomes=(("skewed", 50),), clock_offset_min_s=-1.7e12)
    (line,) = _judge_ws(s)
    assert "check the endpoint's timestamp_unit" in line


def test_latencies_over_a_day_point_at_timestamp_unit() -> None:
    """Delivery latencies of decades (seconds read as ms) fail with the timestamp_unit hint."""
    s = _ws_summary(p50_s=1.7e9, max_s=1.7e9, clock_offset_min_s=1.7e9)
    (line,) = _judge_ws(s)
    assert "clock_skew" in line and "timestamp_unit" in line


def test_only_latency_breaches_can_be_blamed_on_the_generator() -> None:
    """only_latency_breached holds for a latency breach alone, not with no data or errors."""
    slow = judge(ScenarioThresholds(), [_http([1.0] * 10).roll(1.0)])
    empty = judge(ScenarioThresholds(), [_http([]).roll(1.0)])
    erring = judge(ScenarioThresholds(), [_http([1.0] * 10, errors=5).roll(1.0)])
    assert slow.only_latency_breached
    assert not empty.only_latency_breached
    assert not erring.only_latency_breached


MIN_SAMPLES_CONFIG = """\
version: 1
defaults:
  thresholds:
    http_latency: {min_samples: 20}
scenarios:
  poll:
    shape: {kind: constant, users: 1}
    thresholds:
      endpoints:
        /api/a: {http_latency: {min_samples: MIN}}
    users:
      - {kind: rest, pacing: 1s, tasks: [{path: /api/a}, {path: /api/b}]}
"""


def test_min_samples_is_read_per_threshold_and_inherited() -> None:
    """defaults set min_samples for every endpoint; an endpoint override replaces it."""
    config = parse_config(MIN_SAMPLES_CONFIG.replace("MIN", "0"), "test.yaml")
    t = config.scenario("poll").thresholds
    assert t.for_endpoint("/api/b").http_latency.min_samples == 20
    assert t.for_endpoint("/api/a").http_latency.min_samples == 0


def test_negative_min_samples_is_refused_with_its_place_in_the_file() -> None:
    """A negative min_samples is an error at file:line:path."""
    with pytest.raises(ConfigError) as caught:
        parse_config(MIN_SAMPLES_CONFIG.replace("MIN", "-1"), "test.yaml")
    (issue,) = caught.value.issues
    assert issue.path == "scenarios.poll.thresholds.endpoints['/api/a'].http_latency.min_samples"
    assert issue.line == 10 and "must not be negative, got -1" in issue.message


def test_summary_names_what_went_wrong_in_table_and_json() -> None:
    """Diagnostics, sequence anomalies, the clock offset and failed outcomes reach the summary."""
    from loadsvc.report import summary_doc, summary_table
    from loadsvc.runner import RunResult

    summary = _ws_summary(
        outcomes=(("ok", 50), ("skewed", 4)),
        clock_offset_min_s=-2.5,
        sequence_anomalies=(("duplicate", 3), ("reordered", 2)),
        diagnostics=(("tls", "certificate verify failed: self-signed certificate", 20),),
    )
    samples = LatencySamples()
    samples.add(0.01)
    verdict = judge(ScenarioThresholds(), [(summary, samples)])
    run = RunResult("s", "r1", 0.0, 1.0, 1.0, verdict, (summary,), "failed")
    table = summary_table(run)
    assert "/ws/market outcomes: skewed 4" in table
    assert "/ws/market tls: certificate verify failed: self-signed certificate (20 times)" in table
    assert "/ws/market sequence anomalies: duplicate 3, reordered 2" in table
    assert "/ws/market clock offset min -2.500 s" in table
    (ep,) = summary_doc(run, "http://t")["endpoints"]
    assert ep["clock_offset_ms"] == -2500.0
    assert ep["sequence_anomalies"] == {"duplicate": 3, "reordered": 2}
    assert ep["diagnostics"] == [
        {
            "reason": "tls",
            "detail": "certificate verify failed: self-signed certificate",
            "count": 20,
        }
    ]
    skew = summary_doc(run, "http://t")["thresholds"][-1]
    assert (skew["name"], skew["state"], skew["value"], skew["skewed"]) == (
        "clock_skew",
        "breached",
        -2500.0,
        4,
    )


def _window(
    *stats: EndpointStats, lag: float | None = None, idle: frozenset[str] = frozenset()
) -> RolledWindow:
    """A rolled window of ``stats`` under the default thresholds."""
    return RolledWindow(ScenarioThresholds(), [s.roll(1.0) for s in stats], idle, lag)


def test_trust_limit_is_a_share_of_the_tightest_latency_limit() -> None:
    """The lag trusted is 10 % of the tightest latency limit, endpoint overrides included."""
    tight = Thresholds(http_latency=LatencyThreshold(0.95, 0.05))
    assert trust_limit(ScenarioThresholds()) == pytest.approx(0.01)  # ws p99 100 ms
    assert trust_limit(ScenarioThresholds(endpoints=(("/x", tight),))) == pytest.approx(0.005)


def test_window_that_holds_passes_with_no_reasons_and_its_percentiles() -> None:
    """A window within every threshold passes, gives no reason, and its summaries carry p50..max."""
    judged = judge_window(_window(_http([0.01] * 99 + [0.05]), lag=0.5))
    assert judged.result == "passed" and judged.passed and judged.reasons == ()
    (ep,) = judged.endpoints
    assert (ep.p50_s, ep.p99_s, ep.max_s) == (0.01, 0.01, 0.05)
    assert judged.loop_lag_p99_s == 0.5


def test_breach_within_the_lag_of_a_busy_generator_is_generator_bound_and_says_why() -> None:
    """Only latency breached, busy loop, breach no larger than the lag p99: generator_bound."""
    assert judge_window(_window(_http([0.215] * 10), lag=0.0101)).result == "failed"  # 15 > 10.1
    judged = judge_window(_window(_http([0.205] * 10), lag=0.0101))
    assert judged.result == "generator_bound" and not judged.passed
    assert judged.reasons == (
        "/api/x http_latency p95 = 205.0 ms (limit 200 ms) BREACHED",
        "event-loop lag p99 10.1 ms is over 10 ms (the generator was busy): "
        "every breach is within the lag, so the excess is not certain",
    )


def test_breach_beyond_the_lag_fails_however_busy_the_generator_was() -> None:
    """A breach larger than the lag p99 is the backend's: failed, naming the excess, at any lag."""
    judged = judge_window(_window(_http([1.0] * 10), lag=0.04))
    assert judged.result == "failed"
    assert judged.reasons == (
        "/api/x http_latency p95 = 1000.0 ms (limit 200 ms) BREACHED",
        "event-loop lag p99 40.0 ms is over 10 ms (the generator was busy), but the lag cannot "
        "explain the breach: beyond the lag by /api/x http_latency 760.0 ms",
    )
    # An hour-old stamp is never excused by 12 ms of lag.
    assert judge_window(_window(_http([3600.0] * 10), lag=0.012)).result == "failed"


def test_lag_at_the_trust_limit_or_unwatched_leaves_a_breach_failed() -> None:
    """Lag exactly at the trust limit, or no lag measured, leaves a latency breach failed."""
    for lag in (0.01, None):
        judged = judge_window(_window(_http([1.0] * 10), lag=lag))
        assert judged.result == "failed"
        assert judged.reasons == ("/api/x http_latency p95 = 1000.0 ms (limit 200 ms) BREACHED",)


def test_lagging_loop_never_excuses_no_data_or_errors() -> None:
    """No data, or errors beside a latency breach, fail whatever the loop lag."""
    for stats in (_http([]), _http([1.0] * 10, errors=5)):
        judged = judge_window(_window(stats, lag=5.0))
        assert judged.result == "failed"
        assert len(judged.reasons) == len(judged.verdict.breached()) + 1 >= 2
        assert "the generator was busy" in judged.reasons[-1]


def test_window_leaves_idle_endpoints_unjudged_but_reported() -> None:
    """An idle endpoint is not judged, yet its summary stays in the window's endpoints."""
    judged = judge_window(_window(_http([]), idle=frozenset({"/api/x"})))
    assert judged.result == "passed" and judged.verdict.judgements == ()
    assert [e.endpoint for e in judged.endpoints] == ["/api/x"]


STREAM = Thresholds(
    ws_delivery_rate=1.0,
    ws_missed_ratio=0.2,
    ws_stall=StallThreshold(5.0, 0),
    ws_connect_time=LatencyThreshold(0.95, 1.0, min_samples=0),
    ws_reconnect_time=LatencyThreshold(0.95, 1.0, min_samples=1),
)


def _stream(
    frames: int, open_s: float, *, missed: int = 0, sequenced: bool = True
) -> EndpointStats:
    """One WS connection open for ``open_s`` that delivered ``frames`` (each 1 ms late)."""
    st = EndpointStats("/ws/market", "ws", "", now=0.0)
    st.sequenced = sequenced
    st.connection_opened(0.0)
    st.connect.add(0.01)
    for _ in range(frames):
        st.add_outcome("ok", False)
        st.latency.add(0.001)
    st.missed = missed
    st.connection_closed(open_s)
    return st


def _by_name(thresholds: Thresholds, st: EndpointStats) -> dict[str, str]:
    verdict = judge(ScenarioThresholds(default=thresholds), [st.roll(20.0)])
    return {j.name: j.describe() for j in verdict.judgements}


def test_stream_judgements_are_off_unless_configured() -> None:
    """The built-in thresholds judge a stream on latency and errors only."""
    assert set(_by_name(Thresholds(), _stream(2, 20.0))) == {"ws_delivery_latency", "error_ratio"}


def test_a_stream_that_stopped_fails_on_its_rate_stalls_and_missed_share() -> None:
    """2 frames in 20 connection-seconds, one stall, 2 missed of 4 expected: each breached in
    its unit; the reconnect time required by min_samples 1 has no data."""
    st = _stream(2, 20.0, missed=2)
    st.stalls = 1
    d = _by_name(STREAM, st)
    assert d["ws_delivery_rate"] == (
        "/ws/market ws_delivery_rate = 0.10 msg/s per connection (floor 1.00 msg/s) BREACHED"
    )
    assert d["ws_missed_ratio"] == (
        "/ws/market ws_missed_ratio = 50.00% of the expected frames (limit 20.00%) BREACHED"
    )
    assert d["ws_stalled"] == "/ws/market ws_stalled = 1 stalls (limit 0) BREACHED"
    assert d["ws_connect_time"] == "/ws/market ws_connect_time p95 = 10.0 ms (limit 1000 ms) ok"
    assert d["ws_reconnect_time"].endswith("no data (0 of min 1 samples) FAILED")


def test_a_healthy_stream_passes_every_stream_judgement() -> None:
    """40 frames in 20 connection-seconds, none missed, a reconnect of 50 ms: all ok."""
    st = _stream(40, 20.0)
    st.reconnect.add(0.05)
    verdict = judge(ScenarioThresholds(default=STREAM), [st.roll(20.0)])
    assert verdict.passed, [j.describe() for j in verdict.breached()]


def test_no_sequence_numbers_no_missed_judgement_and_no_connection_no_rate() -> None:
    """Without sequence numbers nothing can be missed, so missed is not judged (never a 0 %
    pass); a stream that never had a connection open has no rate: no_data, which fails."""
    assert "ws_missed_ratio" not in _by_name(STREAM, _stream(40, 20.0, sequenced=False))
    never = EndpointStats("/ws/market", "ws", "", now=0.0)
    never.sequenced = True
    d = _by_name(STREAM, never)
    assert d["ws_delivery_rate"] == (
        "/ws/market ws_delivery_rate: no data (no connection was open) FAILED"
    )
    assert d["ws_missed_ratio"] == (
        "/ws/market ws_missed_ratio: no data "
        "(no frame was expected or carried its sequence number) FAILED"
    )


def _samples(values: list[float]) -> LatencySamples:
    samples = LatencySamples()
    for v in values:
        samples.add(v)
    return samples


def test_frames_that_shared_a_read_move_a_quantile_by_the_ranks_they_hold() -> None:
    """A quantile can fall by what lies ``shared`` ranks below it, never more: nothing on a
    flat distribution, the next values on a spread one, down to 0 once they could be all."""
    flat = _samples([0.3] * 1000)
    assert rank_shift(flat, 5, 0.99) == 0.0
    assert rank_shift(flat, 500, 0.99) == 0.0  # half of them: the p99 still cannot move
    spread = _samples([i / 1000 for i in range(1, 1001)])  # 1..1000 ms
    assert rank_shift(spread, 0, 0.99) == 0.0
    assert rank_shift(spread, 10, 0.99) == pytest.approx(0.990 - 0.980)
    assert rank_shift(spread, 10, 0.5) == pytest.approx(0.500 - 0.490)
    assert rank_shift(spread, 990, 0.99) == pytest.approx(0.990)  # could all be below it
    assert rank_shift(_samples([]), 3, 0.99) == 0.0


def _kernel_stream(values: list[float]) -> tuple[EndpointSummary, LatencySamples]:
    st = EndpointStats("/ws/market", "ws", "", now=0.0)
    st.arrival_clock("kernel")
    for v in values:
        st.add_outcome("ok", False)
        st.latency.add(v)
    return st.roll(10.0)


def test_a_window_whose_few_frames_shared_reads_is_judged_by_what_they_can_move() -> None:
    """2 frames of 1,000 shared a read (their wait 300 ms) on a kernel-timed stream whose p99
    breaches by 200 ms: busy, but the two cannot explain it, so the window fails. On a stream
    spread from 0.6 to 600 ms, 600 of them could move the p99 down to 234 ms (still failed,
    by 134 ms); 900 of them down to 54 ms: generator_bound."""
    flat = RolledWindow(
        ScenarioThresholds(), [_kernel_stream([0.3] * 1000)], reads=ReadTiming(0.0001, 2, 0.3)
    )
    failed = judge_window(flat)
    assert failed.result == "failed" and failed.reads.busy
    assert failed.reads.delay_for("/ws/market", 0.99) == pytest.approx(0.0001)
    assert "cannot explain the breach" in failed.reasons[-1]
    spread = [i / 1000 * 0.6 for i in range(1, 1001)]  # p99 0.594 s, p39 0.234 s
    for shared, result in ((600, "failed"), (900, "generator_bound")):
        reads = ReadTiming(0.0001, shared, 0.6)
        judged = judge_window(
            RolledWindow(ScenarioThresholds(), [_kernel_stream(spread)], reads=reads)
        )
        assert judged.result == result, (shared, judged.reasons)
    assert (
        "by /ws/market ws_delivery_latency 134.0 ms"
        in judge_window(
            RolledWindow(
                ScenarioThresholds(), [_kernel_stream(spread)], reads=ReadTiming(0.0001, 600, 0.6)
            )
        ).reasons[-1]
    )
