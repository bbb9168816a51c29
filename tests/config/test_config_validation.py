"""Validation rules: unknown keys, types, names, schedules, shapes and user groups."""

from __future__ import annotations

import pytest

from tests.support.configs import REST_SCENARIO, document, issues_of, only_issue

# The keys of a valid REST scenario, indented to sit under a scenario name.
REST_BODY = REST_SCENARIO.split("poll:\n", 1)[1]


def scenario(body: str) -> str:
    """A document with one scenario ``s`` whose keys are ``body`` (indented by the caller)."""
    return document("scenarios:\n  s:\n" + body)


def rest_user(extra: str) -> str:
    """One scenario with one REST user that has ``extra`` keys (and a task)."""
    return scenario(
        "    shape: {kind: constant, users: 1}\n"
        "    users:\n"
        "      - kind: rest\n"
        "        tasks: [{path: /api/a}]\n" + extra
    )


def test_unknown_key_suggests_the_close_match() -> None:
    """A misspelt key is reported with a suggestion and the list of known keys."""
    issue = only_issue(rest_user("        pacing: 1s\n        pacin: 2s\n"))
    assert issue.path == "scenarios.s.users[0].pacin"
    assert issue.line == 9
    assert issue.message == (
        "unknown key 'pacin' for user kind 'rest' (did you mean 'pacing'?); "
        "expected one of: kind, weight, pacing, think_time, timeout, max_body, max_decompressed, "
        "rate_limit, tasks"
    )


def test_unknown_top_level_key_is_an_error_but_x_keys_are_not() -> None:
    """Unknown top-level keys are errors; 'x-' keys are free for YAML anchors."""
    text = document("scenarioz: {}\nx-anchors: {a: 1}\n" + REST_SCENARIO)
    issue = only_issue(text)
    assert issue.path == "scenarioz"
    assert "(did you mean 'scenarios'?)" in issue.message


def test_version_is_required_and_must_be_one() -> None:
    """A missing version and any version but 1 are refused."""
    assert only_issue(REST_SCENARIO).path == "version"
    assert "unsupported version 3" in only_issue(document(REST_SCENARIO, version=3)).message


def test_at_least_one_scenario() -> None:
    """A configuration with no scenarios is refused."""
    assert only_issue(document("scenarios: {}\n")).message == "at least one scenario is required"
    assert only_issue(document("defaults: {}\n")).path == "scenarios"


@pytest.mark.parametrize("name", ["Poll", "1poll", "poll-fast", "_poll"])
def test_scenario_names_are_lower_snake_case(name: str) -> None:
    """Scenario names must match [a-z][a-z0-9_]*."""
    issue = only_issue(document(REST_SCENARIO.replace("poll:", f"{name!r}:")))
    assert issue.line == 3
    assert "invalid scenario name" in issue.message


def test_wrong_types_name_the_expected_type() -> None:
    """A value of the wrong type says what was expected and what was found."""
    text = scenario(
        "    shape: {kind: constant, users: many}\n"
        "    users:\n"
        "      - kind: rest\n"
        "        pacing: [1s]\n"
        "        weight: 1.5\n"
        "        tasks: {path: /a}\n"
    )
    messages = {i.path: i.message for i in issues_of(text)}
    assert messages == {
        "scenarios.s.shape.users": "expected an integer, got 'many'",
        "scenarios.s.users[0].pacing": "expected a duration such as '2s' or '500ms', got a list",
        "scenarios.s.users[0].weight": "expected an integer, got 1.5",
        "scenarios.s.users[0].tasks": "expected a non-empty list of tasks",
    }


def test_bad_cron_expression() -> None:
    """A cron expression that APScheduler refuses is reported at its line."""
    text = scenario("    schedule: {kind: cron, cron: '0 25 * * *'}\n" + REST_BODY)
    issue = only_issue(text)
    assert (issue.path, issue.line) == ("scenarios.s.schedule.cron", 4)
    assert "invalid cron expression '0 25 * * *'" in issue.message


def test_cron_with_wrong_field_count_explains_the_fields() -> None:
    """A cron expression with the wrong number of fields names the five fields."""
    text = scenario("    schedule: {kind: cron, cron: '0 9 * *'}\n" + REST_BODY)
    assert "five fields: minute hour" in only_issue(text).message


def test_bad_timezone() -> None:
    """An unknown time zone is reported; the cron expression is still checked."""
    text = scenario(
        "    schedule: {kind: cron, cron: '0 9 * * mon-fri', timezone: Asia/Hanoi_City}\n"
        + REST_BODY
    )
    issue = only_issue(text)
    assert issue.path == "scenarios.s.schedule.timezone"
    assert issue.message.startswith("unknown time zone 'Asia/Hanoi_City'")


def test_schedule_keys_depend_on_the_kind() -> None:
    """A key of another schedule kind is unknown for this one."""
    text = scenario("    schedule: {kind: interval, every: 1m, timezone: UTC}\n" + REST_BODY)
    issue = only_issue(text)
    assert issue.path == "scenarios.s.schedule.timezone"
    assert "for schedule kind 'interval'" in issue.message


def test_unknown_kind_is_reported_with_the_choices() -> None:
    """An unknown schedule, shape or user kind lists the kinds there are."""
    text = scenario(
        "    schedule: {kind: hourly}\n"
        "    shape: {kind: steps}\n"
        "    users: [{kind: websocket, path: /ws}]\n"
    )
    messages = {i.path: i.message for i in issues_of(text)}
    assert messages == {
        "scenarios.s.schedule.kind": (
            "expected one of continuous, interval, cron, manual, got 'hourly'"
        ),
        "scenarios.s.shape.kind": "expected one of constant, ramping, got 'steps'",
        "scenarios.s.users[0].kind": (
            "expected one of rest, ws_stream, ws_reconnect, python, got 'websocket'"
        ),
    }


def test_pacing_and_think_time_together_are_refused() -> None:
    """A REST user with both pacing and think_time is an error."""
    issue = only_issue(rest_user("        pacing: 1s\n        think_time: {min: 1s, max: 2s}\n"))
    assert issue.path == "scenarios.s.users[0]"
    assert "not both" in issue.message


def test_neither_pacing_nor_think_time_is_refused() -> None:
    """A REST user needs pacing or think_time."""
    issue = only_issue(rest_user(""))
    assert (issue.path, issue.line) == ("scenarios.s.users[0]", 6)
    assert "needs 'pacing'" in issue.message


def test_think_time_min_must_not_exceed_max() -> None:
    """think_time min above max is an error naming both."""
    issue = only_issue(rest_user("        think_time: {min: 500ms, max: 100ms}\n"))
    assert issue.path == "scenarios.s.users[0].think_time"
    assert issue.message == "min (500ms) must not be more than max (100ms)"


def test_paths_start_with_a_slash() -> None:
    """Request and WebSocket paths must start with '/'."""
    text = scenario(
        "    shape: {kind: constant, users: 1}\n"
        "    users:\n"
        "      - {kind: ws_stream, path: ws/market}\n"
        "      - {kind: rest, pacing: 1s, tasks: [{path: 'http://x/a'}]}\n"
    )
    assert [i.path for i in issues_of(text)] == [
        "scenarios.s.users[0].path",
        "scenarios.s.users[1].tasks[0].path",
    ]


def test_task_fields_are_checked() -> None:
    """Method, weight, expected statuses and required keys of a task are validated."""
    text = rest_user(
        "        pacing: 1s\n"
        "      - kind: rest\n"
        "        pacing: 1s\n"
        "        tasks:\n"
        "          - {path: /b, method: FETCH, weight: 0, expect_status: [200, 99], required_keys: [[x]]}\n"
    )
    messages = {i.path.rsplit(".", 1)[1]: i.message for i in issues_of(text)}
    assert messages == {
        "method": ("expected one of GET, POST, PUT, PATCH, DELETE, HEAD, got 'FETCH'"),
        "weight": "must be a positive integer, got 0",
        "expect_status[1]": "must be between 100 and 599, got 99",
        "required_keys[0]": "expected a string, got a list",
    }


def test_constant_shape_needs_at_least_one_user() -> None:
    """A constant shape of 0 users is refused."""
    issue = only_issue(document(REST_SCENARIO.replace("users: 1", "users: 0")))
    assert issue.message == "must be a positive integer, got 0"


def test_ramping_shape_rules() -> None:
    """Stages need a positive duration and a non-negative target; a list is required."""
    text = scenario(
        "    shape: {kind: ramping, start_users: -1, stages: [{duration: 0s, target: -1}, {target: 5}]}\n"
        "    users: [{kind: ws_stream, path: /ws}]\n"
    )
    assert [(i.path, i.message) for i in issues_of(text)] == [
        ("scenarios.s.shape.start_users", "must not be negative, got -1"),
        ("scenarios.s.shape.stages[0].duration", "must be longer than 0, got '0s'"),
        ("scenarios.s.shape.stages[0].target", "must not be negative, got -1"),
        ("scenarios.s.shape.stages[1].duration", "required key is missing"),
    ]


def test_ramping_shape_without_users_is_refused() -> None:
    """A ramping shape whose start and every target are 0 never runs anyone."""
    text = scenario(
        "    shape: {kind: ramping, stages: [{duration: 10s, target: 0}]}\n"
        "    users: [{kind: ws_stream, path: /ws}]\n"
    )
    assert "never has any users" in only_issue(text).message


def test_shape_and_users_are_required() -> None:
    """A scenario without shape or users reports both missing."""
    text = scenario("    description: nothing\n")
    assert [i.path for i in issues_of(text)] == ["scenarios.s.shape", "scenarios.s.users"]


def test_ws_user_settings_are_checked() -> None:
    """Message, backoff and reconnect settings of WS users are validated."""
    text = scenario(
        "    shape: {kind: constant, users: 1}\n"
        "    users:\n"
        "      - kind: ws_reconnect\n"
        "        path: /ws\n"
        "        cycle: 0s\n"
        "        messages_per_cycle: 0\n"
        "        message: {timestamp_unit: µs, skip_types: status}\n"
        "        backoff: {initial: 10s, multiplier: 0.5}\n"
    )
    assert {i.path: i.message for i in issues_of(text)} == {
        "scenarios.s.users[0].cycle": "must be longer than 0, got '0s'",
        "scenarios.s.users[0].messages_per_cycle": "must be a positive integer, got 0",
        "scenarios.s.users[0].message.timestamp_unit": "expected one of s, ms, us, ns, rfc3339, got 'µs'",
        "scenarios.s.users[0].message.skip_types": "expected a list, got 'status'",
        "scenarios.s.users[0].backoff": "initial (10s) must not be more than max (5s)",
        "scenarios.s.users[0].backoff.multiplier": "must be at least 1, got 0.5",
    }


def test_endpoint_label_cannot_be_both_http_and_ws() -> None:
    """Within a scenario, one endpoint label cannot name an HTTP task and a WS user."""
    text = scenario(
        "    shape: {kind: constant, users: 1}\n"
        "    users:\n"
        "      - {kind: rest, pacing: 1s, tasks: [{path: /api/a, name: market}]}\n"
        "      - {kind: ws_stream, path: /ws/market, name: market}\n"
    )
    issue = only_issue(text)
    assert (issue.path, issue.line) == ("scenarios.s.users[1]", 7)
    assert issue.message == (
        "endpoint 'market' is already used by an HTTP task (line 6); "
        "give one of them a distinct 'name'"
    )


def test_service_settings_are_checked() -> None:
    """The service section's sizes and durations are validated."""
    text = document(
        "service: {history_max_bytes: 0, stop_timeout: soon, histroy_file: x}\n" + REST_SCENARIO
    )
    assert {i.path: i.message for i in issues_of(text)} == {
        "service.history_max_bytes": "must be a positive integer, got 0",
        "service.stop_timeout": "expected a duration such as '2s' or '500ms', got 'soon'",
        "service.histroy_file": (
            "unknown key 'histroy_file' (did you mean 'history_file'?); expected one of: "
            "history_file, history_max_bytes, history_max_age, stop_timeout, log_interval"
        ),
    }
