"""Thresholds: defaults, scenario overrides and endpoint overrides merge field by field."""

from __future__ import annotations

from loadsvc.config import LatencyThreshold, Thresholds, parse_config
from loadsvc.config.spec import StallThreshold
from tests.support.configs import document, issues_of, only_issue

USERS = """\
    shape: {kind: constant, users: 1}
    users:
      - kind: rest
        pacing: 1s
        tasks:
          - path: /api/market/alerts?limit=50
          - path: /api/market/snapshot
      - kind: ws_stream
        path: /ws/market
"""


def with_thresholds(defaults: str, scenario: str) -> str:
    """A one-scenario document with ``defaults`` and scenario ``thresholds`` bodies."""
    return document(
        "defaults:\n  thresholds:\n"
        + defaults
        + "scenarios:\n  s:\n"
        + USERS
        + "    thresholds:\n"
        + scenario
    )


def test_defaults_override_the_built_in_thresholds() -> None:
    """defaults.thresholds replaces only the fields it sets."""
    text = with_thresholds("    http_latency: {max: 300ms}\n    error_ratio: 0.05\n", "      {}\n")
    thresholds = parse_config(text).scenario("s").thresholds
    assert thresholds.default == Thresholds(
        http_latency=LatencyThreshold(0.95, 0.3),
        ws_delivery_latency=LatencyThreshold(0.99, 0.1),
        error_ratio=0.05,
    )


def test_scenario_overrides_defaults_field_by_field() -> None:
    """A scenario's thresholds override the defaults, down to quantile and max."""
    text = with_thresholds(
        "    http_latency: {quantile: 0.9, max: 300ms}\n",
        "      http_latency: {max: 250ms}\n      ws_delivery_latency: {quantile: 0.95}\n",
    )
    thresholds = parse_config(text).scenario("s").thresholds
    assert thresholds.default == Thresholds(
        http_latency=LatencyThreshold(0.9, 0.25),
        ws_delivery_latency=LatencyThreshold(0.95, 0.1),
        error_ratio=0.01,
    )


def test_endpoint_overrides_merge_over_the_scenario() -> None:
    """Endpoint thresholds start from the scenario's and replace what they set."""
    text = with_thresholds(
        "    error_ratio: 0.02\n",
        "      http_latency: {max: 250ms}\n"
        "      endpoints:\n"
        "        /api/market/alerts: {http_latency: {quantile: 0.99}, error_ratio: 0.1}\n"
        "        /ws/market: {ws_delivery_latency: {max: 1s}}\n",
    )
    thresholds = parse_config(text).scenario("s").thresholds
    scenario_level = Thresholds(LatencyThreshold(0.95, 0.25), LatencyThreshold(0.99, 0.1), 0.02)
    assert thresholds.default == scenario_level
    assert thresholds.for_endpoint("/api/market/alerts") == Thresholds(
        LatencyThreshold(0.99, 0.25), LatencyThreshold(0.99, 0.1), 0.1
    )
    assert thresholds.for_endpoint("/ws/market") == Thresholds(
        LatencyThreshold(0.95, 0.25), LatencyThreshold(0.99, 1.0), 0.02
    )
    assert thresholds.for_endpoint("/api/market/snapshot") == scenario_level
    assert [name for name, _ in thresholds.endpoints] == ["/api/market/alerts", "/ws/market"]


def test_other_scenarios_keep_the_defaults() -> None:
    """One scenario's overrides do not leak into another scenario."""
    text = with_thresholds("    error_ratio: 0.02\n", "      error_ratio: 0.5\n") + (
        "  t:\n" + USERS
    )
    config = parse_config(text)
    assert config.scenario("s").thresholds.default.error_ratio == 0.5
    assert config.scenario("t").thresholds.default.error_ratio == 0.02


def test_unknown_threshold_endpoint_names_the_known_ones() -> None:
    """An endpoint the scenario does not measure is an error listing those it does."""
    issue = only_issue(with_thresholds("    {}\n", "      endpoints:\n        /api/alerts: {}\n"))
    assert issue.path == "scenarios.s.thresholds.endpoints['/api/alerts']"
    assert issue.line == 18
    assert issue.message == (
        "unknown endpoint '/api/alerts' (did you mean '/api/market/alerts'?); "
        "this scenario measures: "
        "/api/market/alerts, /api/market/snapshot, /ws/market"
    )


def test_threshold_endpoint_with_query_string_points_at_the_label() -> None:
    """Naming an endpoint with its query string hints at the label without it."""
    text = with_thresholds(
        "    {}\n", "      endpoints:\n        /api/market/alerts?limit=50: {error_ratio: 0.1}\n"
    )
    message = only_issue(text).message
    assert "named without the query string: '/api/market/alerts'" in message


def test_threshold_values_are_range_checked() -> None:
    """quantile is in (0, 1), max is a positive duration, error_ratio is in [0, 1]."""
    text = with_thresholds(
        "    http_latency: {quantile: 1, max: 0s}\n    error_ratio: 1.5\n",
        "      ws_delivery_latency: {quantile: 0, max: quick}\n"
        "      endpoints:\n        /ws/market: {error_ratio: -0.1}\n",
    )
    assert {i.path: i.message for i in issues_of(text)} == {
        "defaults.thresholds.http_latency.quantile": "must be in (0, 1), got 1",
        "defaults.thresholds.http_latency.max": "must be longer than 0, got '0s'",
        "defaults.thresholds.error_ratio": "must be in [0, 1], got 1.5",
        "scenarios.s.thresholds.ws_delivery_latency.quantile": "must be in (0, 1), got 0",
        "scenarios.s.thresholds.ws_delivery_latency.max": (
            "expected a duration such as '2s' or '500ms', got 'quick'"
        ),
        "scenarios.s.thresholds.endpoints['/ws/market'].error_ratio": (
            "must be in [0, 1], got -0.1"
        ),
    }


def test_endpoints_are_only_per_scenario() -> None:
    """defaults.thresholds has no 'endpoints': endpoints belong to a scenario."""
    issue = only_issue(with_thresholds("    endpoints: {}\n", "      {}\n"))
    assert issue.path == "defaults.thresholds.endpoints"
    assert issue.message.startswith("unknown key 'endpoints'")


def test_latency_max_becomes_a_histogram_boundary() -> None:
    """Every configured latency limit is among the config's latency boundaries."""
    text = with_thresholds(
        "    {}\n", "      endpoints:\n        /ws/market: {ws_delivery_latency: {max: 1s}}\n"
    )
    assert parse_config(text).latency_boundaries() == (0.1, 0.2, 1.0)


def test_stream_thresholds_merge_and_stay_off_unless_set() -> None:
    """The stream judgements are off by default; set in defaults they reach every scenario and
    an endpoint override changes only what it sets (``ws_stall.after: 0`` turns the watch off)."""
    assert Thresholds().stream_limits() == {}
    text = with_thresholds(
        "    ws_delivery_rate: 1\n    ws_missed_ratio: 0.2\n    ws_stall: {after: 5s}\n"
        "    ws_reconnect_time: {max: 1s}\n",
        "      endpoints:\n        /ws/market: {ws_stall: {after: 0s}, ws_connect_time: {max: 2.5s}}\n",
    )
    thresholds = parse_config(text).scenario("s").thresholds
    assert thresholds.default.stream_limits() == {
        "ws_delivery_rate": 1.0,
        "ws_missed_ratio": 0.2,
        "ws_stalled": 0.0,
        "ws_reconnect_time": 1.0,
    }
    ws = thresholds.for_endpoint("/ws/market")
    assert ws.ws_stall == StallThreshold(None, 0)
    assert ws.ws_connect_time == LatencyThreshold(0.95, 2.5, min_samples=0)
    assert ws.stream_limits() == {
        "ws_delivery_rate": 1.0,
        "ws_missed_ratio": 0.2,
        "ws_connect_time": 2.5,
        "ws_reconnect_time": 1.0,
    }


def test_stream_threshold_values_are_checked() -> None:
    """A negative rate floor, a missed share over 1, a negative stall count, and a connect limit
    that is not a bucket bound of the connect histograms are each an error naming the field."""
    text = with_thresholds(
        "    ws_delivery_rate: -1\n    ws_missed_ratio: 1.5\n    ws_stall: {after: 5s, max: -1}\n",
        "      ws_connect_time: {max: 3s}\n      ws_reconnect_time: {max: 750ms}\n",
    )
    issues = {i.path: i.message for i in issues_of(text)}
    assert issues["defaults.thresholds.ws_delivery_rate"] == "must be at least 0, got -1"
    assert issues["defaults.thresholds.ws_missed_ratio"] == "must be in [0, 1], got 1.5"
    assert issues["defaults.thresholds.ws_stall.max"] == "must not be negative, got -1"
    for key, got in (("ws_connect_time", "3s"), ("ws_reconnect_time", "750ms")):
        message = issues[f"scenarios.s.thresholds.{key}.max"]
        assert "bucket boundary of the WS connect histograms" in message and got in message
    assert len(issues) == 5


def test_nullable_keys_must_be_required_keys() -> None:
    """``nullable_keys`` naming a key outside ``required_keys`` is an error at its path."""
    text = document(
        """\
        scenarios:
          s:
            shape: {kind: constant, users: 1}
            users:
              - kind: ws_stream
                path: /ws/market
                message: {required_keys: [quotes], nullable_keys: [prices]}
        """
    )
    issue = only_issue(text)
    assert issue.path == "scenarios.s.users[0].message.nullable_keys"
    assert "'prices' not in required_keys" in issue.message
