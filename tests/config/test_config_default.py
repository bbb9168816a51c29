"""The shipped default configuration: the seed's four scenarios, exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from loadsvc.config import (
    Config,
    ConstantShapeSpec,
    LatencyThreshold,
    RampingShapeSpec,
    RestUserSpec,
    Stage,
    Thresholds,
    WsReconnectUserSpec,
    WsStreamUserSpec,
    load_config,
    load_default,
)
from loadsvc.config.spec import StallThreshold

REPO = Path(__file__).resolve().parents[2]
MARKET_KEYS = ("quotes", "indices", "foreign", "derivatives", "prices")


@pytest.fixture(scope="module")
def config() -> Config:
    return load_default()


def test_default_has_the_four_seed_scenarios(config: Config) -> None:
    """The default configuration holds the seed's four scenarios, in file order."""
    assert [s.name for s in config.scenarios] == [
        "market_stream",
        "foreign_flow",
        "market_open_burst",
        "reconnect_storm",
    ]
    assert config.source == "<default>"


def test_market_stream_is_500_ws_users_on_ws_market(config: Config) -> None:
    """market_stream runs 500 WS stream users on /ws/market that require the market keys."""
    scenario = config.scenario("market_stream")
    assert scenario.shape == ConstantShapeSpec(users=500, duration_s=300.0, spawn_rate=100.0)
    (user,) = scenario.users
    assert isinstance(user, WsStreamUserSpec)
    assert (user.path, user.endpoint) == ("/ws/market", "/ws/market")
    assert user.message.required_keys == MARKET_KEYS
    assert user.message.skip_types == ("status",)
    assert (user.message.timestamp_field, user.message.sequence_field) == ("published_at", "seq")


def test_foreign_flow_polls_every_two_seconds(config: Config) -> None:
    """foreign_flow is a REST user paced at 2 s that requires summary and stocks."""
    (user,) = config.scenario("foreign_flow").users
    assert isinstance(user, RestUserSpec)
    assert user.pacing_s == 2.0
    assert user.think_time_s is None
    (task,) = user.tasks
    assert task.path == task.endpoint == "/api/market/foreign-detail"
    assert task.method == "GET"
    assert task.expect_status == (200,)
    assert task.required_keys == ("summary", "stocks")


def test_market_open_burst_ramps_mixed_users(config: Config) -> None:
    """The burst ramps 0 -> 800 -> 800 -> 0 with WS:REST 3:5 and tasks weighted 5:3:1."""
    scenario = config.scenario("market_open_burst")
    assert scenario.shape == RampingShapeSpec(
        stages=(Stage(30.0, 800), Stage(120.0, 800), Stage(30.0, 0)), start_users=0
    )
    ws, rest = scenario.users
    assert isinstance(ws, WsStreamUserSpec)
    assert isinstance(rest, RestUserSpec)
    assert (ws.weight, rest.weight) == (3, 5)
    assert ws.message.required_keys == MARKET_KEYS
    assert rest.think_time_s == (0.1, 0.5)
    assert rest.pacing_s is None
    assert [t.weight for t in rest.tasks] == [5, 3, 1]
    alerts = rest.tasks[2]
    assert alerts.path == "/api/market/alerts?limit=50"
    assert alerts.endpoint == "/api/market/alerts"


def test_reconnect_storm_cycles_every_ten_seconds(config: Config) -> None:
    """reconnect_storm is 100 reconnecting users, a 10 s cycle, 3 messages per cycle."""
    scenario = config.scenario("reconnect_storm")
    assert scenario.shape == ConstantShapeSpec(users=100, duration_s=120.0)
    (user,) = scenario.users
    assert isinstance(user, WsReconnectUserSpec)
    assert (user.cycle_s, user.messages_per_cycle) == (10.0, 3)
    assert user.path == "/ws/market"


def test_default_schedules(config: Config) -> None:
    """Schedules are continuous, continuous, cron at 9:00 Ho Chi Minh time, every 900 s."""
    stream, flow, burst, storm = (s.schedule for s in config.scenarios)
    assert (stream.kind, stream.verdict_every_s) == ("continuous", 300.0)
    assert (flow.kind, flow.verdict_every_s) == ("continuous", 300.0)
    assert (burst.kind, burst.cron, burst.timezone) == (
        "cron",
        "0 9 * * mon-fri",
        "Asia/Ho_Chi_Minh",
    )
    assert (storm.kind, storm.every_s) == ("interval", 900.0)


def test_default_thresholds(config: Config) -> None:
    """Every scenario is judged by p95 < 200 ms (HTTP), p99 < 100 ms (WS), 1% errors, and its
    streams by the seed's pace: >= 1 msg/s per connection (the throttle gives ~2), <= 20 %
    missed, no stall over 5 s, connects and reconnects p95 <= 1 s (the storm must reconnect)."""
    connect = LatencyThreshold(0.95, 1.0, min_samples=0)
    expected = Thresholds(
        LatencyThreshold(0.95, 0.2),
        LatencyThreshold(0.99, 0.1),
        0.01,
        ws_delivery_rate=1.0,
        ws_missed_ratio=0.2,
        ws_stall=StallThreshold(5.0, 0),
        ws_connect_time=connect,
        ws_reconnect_time=connect,
    )
    for scenario in config.scenarios:
        storm = scenario.name == "reconnect_storm"
        reconnect = replace(connect, min_samples=1) if storm else connect
        assert scenario.thresholds.default == replace(expected, ws_reconnect_time=reconnect)
        assert scenario.thresholds.endpoints == ()
    assert config.latency_boundaries() == (0.1, 0.2)


def test_default_service_settings_are_the_spec_defaults(config: Config) -> None:
    """The default file sets no service settings, so they are ServiceSpec's defaults."""
    assert config.service == type(config.service)()


def test_load_config_none_is_the_default(config: Config) -> None:
    """load_config(None) loads the built-in default."""
    assert load_config(None) == config


def test_seed_example_is_identical_to_the_default() -> None:
    """examples/seed.yaml is a byte-identical copy of loadsvc/config/default.yaml."""
    seed = (REPO / "examples" / "seed.yaml").read_bytes()
    default = (REPO / "loadsvc" / "config" / "default.yaml").read_bytes()
    assert seed == default


def test_seed_example_loads_like_the_default(config: Config) -> None:
    """Loading examples/seed.yaml gives the default scenarios."""
    seed = load_config(REPO / "examples" / "seed.yaml")
    assert seed.scenarios == config.scenarios
    assert seed.source.endswith("seed.yaml")
