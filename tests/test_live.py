"""The live judgement: a scenario's thresholds over its last minute, from the sampler's looks."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from loadsvc.config.load import parse_config
from loadsvc.config.spec import ScenarioThresholds
from loadsvc.lag import ReadTiming
from loadsvc.latency import LatencySamples
from loadsvc.live import LiveJudge, SlidingCounts, live_window_from_env
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.sampler import SeriesSampler
from tests.support.configs import config_text, rest_user, scenario

EP = "/api/market/snapshot"
DEFAULT = ScenarioThresholds()


def _counts(*values: float) -> np.ndarray:
    samples = LatencySamples()
    for v in values:
        samples.add(v)
    return np.array(samples.live_counts, dtype=np.int64)


def _second(
    judge: LiveJudge, at: float, latency_s: float, requests: int = 20, errors: int = 0
) -> None:
    judge.add("http", EP, at, 1.0, requests, errors, _counts(*[latency_s] * requests))


def test_a_breach_shows_with_value_limit_and_since_then_clears_within_the_window() -> None:
    """300 ms against 200 ms fails at once with its start time; a window later the good seconds pass."""
    judge = LiveJudge("s", window_s=10)
    for t in range(100, 110):
        _second(judge, t, 0.005)
    assert judge.judge(DEFAULT, 109).result == "passed"
    for t in range(110, 113):
        _second(judge, t, 0.300, errors=2)
    live = judge.judge(DEFAULT, 112)
    assert live.result == "failed"
    latency, errors = (lj for lj in live.breached())
    assert latency.judgement.name == "http_latency" and latency.since == 112
    assert latency.judgement.value == pytest.approx(0.300, rel=0.01)
    assert latency.judgement.limit == 0.2
    assert errors.judgement.value == pytest.approx(6 / 200)  # 6 errors in the 10 s window
    _second(judge, 113, 0.300)
    assert judge.judge(DEFAULT, 113).breached()[0].since == 112  # still the same breach
    for t in range(114, 124):
        _second(judge, t, 0.005)
    assert judge.judge(DEFAULT, 123).result == "passed"  # the slow seconds left the window


def test_an_endpoint_that_stops_answering_is_no_data_not_passed() -> None:
    """After warm-up, a window without a single latency sample fails as no_data."""
    judge = LiveJudge("s", window_s=10)
    for t in range(100, 112):
        judge.add("http", EP, t, 1.0, 0, 0, None)
    live = judge.judge(DEFAULT, 111)
    assert live.result == "failed"
    assert [lj.judgement.state for lj in live.breached()] == ["no_data"]


def test_the_first_seconds_of_a_run_say_starting_not_no_data() -> None:
    """Two seconds in, nothing measured yet is 'starting' (no failure invented)."""
    judge = LiveJudge("s", window_s=60)
    judge.add("http", EP, 100, 1.0, 0, 0, None)
    live = judge.judge(DEFAULT, 100)
    assert live.result == "starting" and live.breached() == ()


def test_a_busy_generator_excuses_only_a_breach_within_its_lag() -> None:
    """205 ms with 30 ms of loop lag is generator_bound; 300 ms with the same lag fails."""
    lag = SlidingCounts(10)
    for t in range(100, 110):
        lag.add(t, 1.0, 0, 0, _counts(*[0.030] * 20))
    near = LiveJudge("s", window_s=10)
    far = LiveJudge("s", window_s=10)
    for t in range(100, 110):
        _second(near, t, 0.205)
        _second(far, t, 0.300)
    assert near.judge(DEFAULT, 109, lag).result == "generator_bound"
    assert far.judge(DEFAULT, 109, lag).result == "failed"
    assert far.judge(DEFAULT, 109, lag).busy


def test_the_window_comes_from_the_environment_and_a_bad_one_names_the_variable() -> None:
    """LOADSVC_LIVE_WINDOW=2m is 120 s; 'soon' and 0 are refused naming the variable."""
    assert live_window_from_env({}) == 60.0
    assert live_window_from_env({"LOADSVC_LIVE_WINDOW": "2m"}) == 120.0
    for bad in ("soon", "0s"):
        with pytest.raises(ValueError, match="LOADSVC_LIVE_WINDOW"):
            live_window_from_env({"LOADSVC_LIVE_WINDOW": bad})


def test_sampler_counts_across_a_window_roll_without_a_gap_or_a_double_count() -> None:
    """A verdict window that rolls between two looks: every request is in exactly one point,
    and the live judgement and its metric see the slow requests of the old window."""
    spec = parse_config(config_text(scenario("s", users=rest_user(EP)))).scenario("s")
    registry = CollectorRegistry()
    recorder = Recorder(create_metrics(registry))
    stats = recorder.begin(spec)
    stats.started_wall = 99.0
    (ep,) = stats.endpoints.values()
    sampler = SeriesSampler(live_window_s=30)
    seen = 0
    for t in range(100, 110):
        for _ in range(7):
            ep.add_outcome("ok", False)
            ep.latency.add(0.300)
            seen += 1
        if t % 3 == 0:
            stats.roll(float(t))  # a verdict window ends between two looks
            for _ in range(3):  # and the next one has begun
                ep.add_outcome("http_error", True)
                ep.latency.add(0.010)
                seen += 1
        sampler.sample(stats, 1, now=float(t))
    doc = sampler.series["s"].to_doc()["endpoints"][0]["points"]
    assert sum(doc["requests"]) == seen
    assert sum(doc["errors"]) == 9
    live = sampler.live("s", now=109.0)
    assert live is not None and live.result == "failed"
    labels = {"scenario": "s", "endpoint": EP, "threshold": "http_latency"}
    recorder.live_judged("s", live)
    assert registry.get_sample_value("loadsvc_live_threshold_breached", labels) == 1
    recorder.live_judged("s", None)  # the scenario stopped: nothing breaches now
    assert registry.get_sample_value("loadsvc_live_threshold_breached", labels) == 0


def test_an_endpoint_without_a_user_all_window_is_idle_but_one_with_users_is_no_data() -> None:
    """A shard without the group's users is not judged (idle, never PASSED); with users and
    no answer it is no_data and fails."""
    judge = LiveJudge("s", window_s=10)
    for t in range(100, 112):
        judge.add("http", EP, t, 1.0, 0, 0, None, manned=False)
    live = judge.judge(DEFAULT, 111)
    assert live.result == "idle" and live.judgements == ()
    judge.add("http", EP, 112, 1.0, 0, 0, None, manned=True)
    assert judge.judge(DEFAULT, 112).result == "failed"


def test_a_few_frames_sharing_reads_do_not_excuse_a_live_breach_of_a_flat_stream() -> None:
    """Live, kernel-timed: 2 frames of ~2,000 shared a read (their wait 300 ms) while every
    frame is 300 ms late (limit 100 ms): they cannot move the p99, so it FAILS; the wait alone
    would have called it generator_bound."""
    judge = LiveJudge("s", window_s=10)
    for t in range(100, 111):
        judge.add(
            "ws", "/ws/market", t, 1.0, 200, 0, _counts(*[0.3] * 200),
            delivered=200, connections=20, clock="kernel",
        )  # fmt: skip
    reads = ReadTiming(0.0001, 2, 0.3)
    live = judge.judge(DEFAULT, 110, reads=reads)
    assert live.result == "failed"
    assert "ws_delivery_latency" in [lj.judgement.name for lj in live.breached()]
    spread = LiveJudge("s", window_s=10)
    for t in range(100, 111):
        values = [0.001 * (i + 1) for i in range(200)]  # 1..200 ms: p99 ~198 ms
        spread.add(
            "ws", "/ws/market", t, 1.0, 200, 0, _counts(*values),
            delivered=200, connections=20, clock="kernel",
        )  # fmt: skip
    assert spread.judge(DEFAULT, 110, reads=ReadTiming(0.0001, 1800, 0.3)).result == (
        "generator_bound"  # 1,800 of 2,000 could hold the whole p99 down to ~20 ms
    )


def test_a_live_pass_under_less_load_than_asked_is_generator_bound_until_it_leaves() -> None:
    """The sampler takes the run's late starts into the live window: users started late that
    missed 5 % of the user-seconds asked make a passing minute generator_bound, and say so;
    once those seconds leave the window it passes again. A new run counts from its start."""
    from loadsvc.headline import live_headline

    spec = parse_config(config_text(scenario("s", users=rest_user(EP)))).scenario("s")
    stats = Recorder(create_metrics(CollectorRegistry())).begin(spec)
    stats.started_wall = 99.0
    (ep,) = stats.endpoints.values()
    sampler = SeriesSampler(live_window_s=10)
    for t in range(100, 125):
        for _ in range(20):
            ep.add_outcome("ok", False)
            ep.latency.add(0.005)
        stats.starts.ask(float(t - 99), 40)  # 40 users asked for, each second
        if t == 105:  # 20 users started 1.0 s late: 20 of 400 user-seconds in the window
            for _ in range(20):
                stats.starts.started_late(1.0)
        sampler.sample(stats, 40, now=float(t))
        live = sampler.live("s", now=float(t))
        assert live is not None
        if t == 110:
            assert live.result == "generator_bound" and live.starts.late == 20
            assert live.starts.share == pytest.approx(0.05)
            assert "started 20 users more than a tick late (5.0 %" in live_headline(live)
    assert live.result == "passed" and live.starts.late == 0  # t=124: 105 left the window
    fresh = Recorder(create_metrics(CollectorRegistry())).begin(spec)
    fresh.started_wall = 124.5
    fresh.starts.ask(0.0, 40)
    fresh.starts.ask(1.0, 40)
    sampler.sample(fresh, 40, now=125.0)  # its totals are not diffed against the old run's
    live = sampler.live("s", now=125.0)
    assert live is not None and live.starts.asked_user_s == pytest.approx(40.0)
