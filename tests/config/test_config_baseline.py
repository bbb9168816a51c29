"""The ``baseline`` block: defaults and scenario overrides merge field by field; bad values named."""

from __future__ import annotations

import pytest

from loadsvc.config import load_default, parse_config
from loadsvc.config.spec import BaselinePolicy, Tolerance
from tests.support.configs import document, issues_of

USERS = """\
    shape: {kind: constant, users: 1}
    users:
      - kind: rest
        pacing: 1s
        tasks: [{path: /api/a}]
"""


def two_scenarios(defaults: str, stream: str = "", poll: str = "") -> str:
    """A continuous scenario ``stream`` and an interval scenario ``poll``, each with an
    optional ``baseline`` body, under ``defaults.baseline`` (YAML bodies, indented)."""
    text = "defaults:\n  baseline:\n" + defaults if defaults else ""
    text += "scenarios:\n  stream:\n    schedule: {kind: continuous, verdict_every: 1m}\n" + USERS
    if stream:
        text += "    baseline:\n" + stream
    text += "  poll:\n    schedule: {kind: interval, every: 5m}\n" + USERS
    if poll:
        text += "    baseline:\n" + poll
    return document(text)


def test_without_a_block_every_scenario_has_the_built_in_policy() -> None:
    """No ``baseline`` anywhere: 7 runs, 3 needed, +50 % and +10 ms, p < 0.001."""
    config = parse_config(two_scenarios(""))
    assert config.scenario("stream").baseline == BaselinePolicy()
    assert config.scenario("poll").baseline.latency == Tolerance(0.5, 10.0)


def test_the_shipped_default_spells_out_the_built_in_policy() -> None:
    """The seed's documented ``defaults.baseline`` changes nothing: it is the built-in policy."""
    assert {s.baseline for s in load_default().scenarios} == {BaselinePolicy()}


def test_defaults_then_the_scenario_replace_only_what_they_set() -> None:
    """Each field, and each margin of a tolerance, is replaced on its own."""
    text = two_scenarios(
        "    runs: 5\n    significance: 0.01\n"
        "    tolerance: {latency: {relative: 30%, absolute: 5ms}, reconnect: {absolute: 2s}}\n",
        poll="      min_runs: 2\n      tolerance:\n"
        "        latency: {absolute: 20ms}\n        error_ratio: {relative: 2, absolute: 1%}\n",
    )
    config = parse_config(text)
    stream, poll = config.scenario("stream").baseline, config.scenario("poll").baseline
    assert (stream.runs, stream.min_runs, stream.alpha) == (5, 3, 0.01)
    assert stream.latency == Tolerance(0.3, 5.0)
    assert stream.reconnect == Tolerance(0.5, 2000.0)
    assert (poll.runs, poll.min_runs) == (5, 2)
    assert poll.latency == Tolerance(0.3, 20.0)  # relative from the defaults
    assert poll.error_ratio == Tolerance(2.0, 0.01)


def test_same_time_of_day_applies_to_continuous_scenarios_only() -> None:
    """From the defaults it reaches the continuous scenario and not the scheduled one."""
    config = parse_config(two_scenarios("    continuous: same_time_of_day\n"))
    assert config.scenario("stream").baseline.same_time_of_day is True
    assert config.scenario("poll").baseline.same_time_of_day is False
    back = parse_config(
        two_scenarios(
            "    continuous: same_time_of_day\n", stream="      continuous: last_windows\n"
        )
    )
    assert back.scenario("stream").baseline.same_time_of_day is False


def test_a_scenario_can_turn_it_off() -> None:
    """enabled: false on one scenario; the other keeps it."""
    config = parse_config(two_scenarios("", poll="      enabled: false\n"))
    assert config.scenario("poll").baseline.enabled is False
    assert config.scenario("stream").baseline.enabled is True


@pytest.mark.parametrize(
    ("defaults", "poll", "path", "message"),
    [
        ("    runs: 0\n", "", "defaults.baseline.runs", "must be between 1 and 1000"),
        ("    min_runs: 8\n", "", "defaults.baseline.min_runs", "must not exceed runs (7)"),
        ("", "      runs: 2\n", "scenarios.poll.baseline.min_runs", "min_runs (3)"),
        ("    significance: 0.9\n", "", "defaults.baseline.significance", "must be in (0, 0.5]"),
        ("    enabled: maybe\n", "", "defaults.baseline.enabled", "expected true or false"),
        ("    continuous: daily\n", "", "defaults.baseline.continuous", "same_time_of_day"),
        ("", "      continuous: same_time_of_day\n", "scenarios.poll.baseline.continuous",
         "continuous scenarios only; this one's schedule is 'interval'"),
        ("    tolerance: {latency: {relative: fast}}\n", "",
         "defaults.baseline.tolerance.latency.relative", "a percentage such as 50%"),
        ("    tolerance: {message_rate: {relative: 150%}}\n", "",
         "defaults.baseline.tolerance.message_rate.relative", "from 0% to 100%"),
        ("    tolerance: {latency: {absolute: -5ms}}\n", "",
         "defaults.baseline.tolerance.latency.absolute", "duration"),
        ("    tolerance: {latncy: {absolute: 10ms}}\n", "",
         "defaults.baseline.tolerance.latncy", "did you mean 'latency'"),
        ("    window: 7\n", "", "defaults.baseline.window", "unknown key 'window'"),
    ],
)  # fmt: skip
def test_a_bad_value_is_named_with_its_path(
    defaults: str, poll: str, path: str, message: str
) -> None:
    """Each mistake is reported at its field (the only issue), with what is wrong."""
    issues = issues_of(two_scenarios(defaults, poll=poll))
    assert [i.path for i in issues] == [path], issues
    assert message in issues[0].message
