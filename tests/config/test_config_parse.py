"""Parsing valid documents: optional fields, spec defaults and YAML conveniences."""

from __future__ import annotations

from loadsvc.config import (
    ConstantShapeSpec,
    HttpTaskSpec,
    RestUserSpec,
    ScheduleSpec,
    ServiceSpec,
    WsBackoffSpec,
    WsMessageSpec,
    WsReconnectUserSpec,
    WsStreamUserSpec,
    parse_config,
)
from tests.support.configs import document


def only_scenario(body: str) -> str:
    """A document with one scenario ``s`` made of ``body``."""
    return document("scenarios:\n  s:\n" + body)


def test_unset_fields_take_the_spec_defaults() -> None:
    """Anything not written comes from the dataclass defaults in spec.py."""
    config = parse_config(
        only_scenario(
            "    shape: {kind: constant, users: 3}\n"
            "    users:\n"
            "      - {kind: rest, pacing: 500ms, tasks: [{path: /a}]}\n"
            "      - {kind: ws_stream, path: /ws}\n"
            "      - {kind: ws_reconnect, path: /ws}\n"
        )
    )
    scenario = config.scenario("s")
    assert scenario.schedule == ScheduleSpec()
    assert scenario.shape == ConstantShapeSpec(users=3, duration_s=None, spawn_rate=None)
    assert (scenario.description, scenario.graceful_stop_s) == ("", 5.0)
    rest, stream, storm = scenario.users
    assert rest == RestUserSpec(tasks=(HttpTaskSpec(path="/a", endpoint="/a"),), pacing_s=0.5)
    assert stream == WsStreamUserSpec(path="/ws", endpoint="/ws")
    assert storm == WsReconnectUserSpec(path="/ws", endpoint="/ws")
    assert config.service == ServiceSpec()


def test_every_field_can_be_set() -> None:
    """Every documented key lands in the matching spec field."""
    config = parse_config(
        document(
            """\
            service:
              history_file: /var/lib/loadsvc/runs.jsonl
              history_max_bytes: 1048576
              history_max_age: 7d
              stop_timeout: 30s
              log_interval: 1m
            scenarios:
              s:
                description: everything
                graceful_stop: 0s
                schedule: {kind: continuous, verdict_every: 1m}
                shape: {kind: constant, users: 10, duration: 1h30m, spawn_rate: 2.5}
                users:
                  - kind: rest
                    weight: 2
                    think_time: {min: 0s, max: 1s}
                    timeout: 3s
                    tasks:
                      - path: /api/orders?x=1
                        name: orders
                        method: post
                        weight: 4
                        expect_status: 201
                        required_keys: [id, on]
                  - kind: ws_reconnect
                    weight: 3
                    path: /ws/alerts?token=abc
                    connect_timeout: 2s
                    cycle: 30s
                    messages_per_cycle: 5
                    message:
                      required_keys: [alerts]
                      type_field: kind
                      skip_types: [ping, status]
                      timestamp_field: ts
                      timestamp_unit: ms
                      sequence_field: null
                    backoff: {initial: 50ms, max: 2s, multiplier: 1.5}
            """
        )
    )
    assert config.service == ServiceSpec(
        "/var/lib/loadsvc/runs.jsonl", 1048576, 7 * 86400.0, 30.0, 60.0
    )
    scenario = config.scenario("s")
    assert (scenario.description, scenario.graceful_stop_s) == ("everything", 0.0)
    assert scenario.schedule == ScheduleSpec(kind="continuous", verdict_every_s=60.0)
    assert scenario.shape == ConstantShapeSpec(users=10, duration_s=5400.0, spawn_rate=2.5)
    rest, storm = scenario.users
    assert rest == RestUserSpec(
        tasks=(
            HttpTaskSpec(
                path="/api/orders?x=1",
                endpoint="orders",
                method="POST",
                weight=4,
                expect_status=(201,),
                required_keys=("id", "on"),
            ),
        ),
        think_time_s=(0.0, 1.0),
        weight=2,
        timeout_s=3.0,
    )
    assert storm == WsReconnectUserSpec(
        path="/ws/alerts?token=abc",
        endpoint="/ws/alerts",
        cycle_s=30.0,
        messages_per_cycle=5,
        message=WsMessageSpec(
            required_keys=("alerts",),
            type_field="kind",
            skip_types=("ping", "status"),
            timestamp_field="ts",
            timestamp_unit="ms",
            sequence_field=None,
        ),
        weight=3,
        connect_timeout_s=2.0,
        backoff=WsBackoffSpec(initial_s=0.05, max_s=2.0, multiplier=1.5),
    )


def test_expect_status_accepts_a_list() -> None:
    """expect_status is one status or a list of them."""
    config = parse_config(
        only_scenario(
            "    shape: {kind: constant, users: 1}\n"
            "    users: [{kind: rest, pacing: 1s, tasks: [{path: /a, expect_status: [200, 304]}]}]\n"
        )
    )
    (user,) = config.scenario("s").users
    assert isinstance(user, RestUserSpec)
    assert user.tasks[0].expect_status == (200, 304)


def test_schedules_of_every_kind() -> None:
    """interval, cron (with a time zone) and manual schedules read into ScheduleSpec."""
    users = "    shape: {kind: constant, users: 1}\n    users: [{kind: ws_stream, path: /ws}]\n"
    text = document(
        "scenarios:\n"
        "  a:\n    schedule: {kind: interval, every: 90}\n"
        + users
        + "  b:\n    schedule: {kind: cron, cron: '*/5 9-15 * * 1-5', timezone: Europe/Paris}\n"
        + users
        + "  c:\n    schedule: {kind: manual}\n"
        + users
    )
    a, b, c = (s.schedule for s in parse_config(text).scenarios)
    assert a == ScheduleSpec(kind="interval", every_s=90.0)
    assert b == ScheduleSpec(kind="cron", cron="*/5 9-15 * * 1-5", timezone="Europe/Paris")
    assert c == ScheduleSpec(kind="manual")


def test_anchors_and_merge_keys_share_settings() -> None:
    """YAML anchors under an 'x-' key and '<<' merges let user groups share settings."""
    text = document(
        """\
        x-market: &market
          kind: ws_stream
          path: /ws/market
          message: {required_keys: [quotes]}
        scenarios:
          s:
            shape: {kind: constant, users: 1}
            users:
              - <<: *market
                weight: 2
              - <<: *market
                kind: ws_reconnect
        """
    )
    first, second = parse_config(text).scenario("s").users
    assert isinstance(first, WsStreamUserSpec)
    assert (first.weight, first.message.required_keys) == (2, ("quotes",))
    assert isinstance(second, WsReconnectUserSpec)
    assert second.message.required_keys == ("quotes",)


def test_empty_sections_mean_defaults() -> None:
    """An empty defaults, service, message or thresholds section is the same as none."""
    text = document(
        """\
        defaults:
        service:
        scenarios:
          s:
            thresholds:
            shape: {kind: constant, users: 1}
            users:
              - kind: ws_stream
                path: /ws
                message:
                backoff:
        """
    )
    config = parse_config(text)
    assert config.service == ServiceSpec()
    (user,) = config.scenario("s").users
    assert user == WsStreamUserSpec(path="/ws", endpoint="/ws")


def test_numbers_are_seconds_and_strings_keep_their_text() -> None:
    """Bare numbers are durations in seconds; YAML 1.1 words like 'on' stay strings."""
    text = only_scenario(
        "    graceful_stop: 2.5\n"
        "    shape: {kind: constant, users: 1, duration: 60}\n"
        "    users: [{kind: ws_stream, path: /ws, message: {required_keys: [yes, 'no', 1]}}]\n"
    )
    scenario = parse_config(text).scenario("s")
    assert scenario.graceful_stop_s == 2.5
    assert scenario.shape == ConstantShapeSpec(users=1, duration_s=60.0)
    (user,) = scenario.users
    assert isinstance(user, WsStreamUserSpec)
    assert user.message.required_keys == ("yes", "no", "1")
