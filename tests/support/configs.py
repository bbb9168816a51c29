"""YAML configuration fragments for small scenarios, and how a document is rejected.

Tests write their configurations as text (the loader reports file lines, so the
text is what is tested); these build the common pieces so that a test spells
out only what it is about.
"""

from __future__ import annotations

import textwrap

import pytest

from loadsvc.config import ConfigError, ConfigIssue, parse_config

WS_MARKET_USER = "      - {kind: ws_stream, path: /ws/market}\n"
ONE_USER_FOR_A_SECOND = "{kind: constant, users: 1, duration: 1s}"

# One group of each user kind against the reference target, as ``users:`` list items: the
# status page and the HTML report draw a chart for every kind of endpoint.
EVERY_KIND_USERS = """\
      - kind: ws_stream
        path: /ws/market
        message: {skip_types: [status], timestamp_field: published_at, sequence_field: seq}
      - kind: ws_reconnect
        path: /ws/foreign
        cycle: 1s
        messages_per_cycle: 1
        message: {skip_types: [status]}
      - kind: rest
        pacing: 500ms
        tasks: [{path: /api/market/snapshot}]
"""

REST_SCENARIO = """\
scenarios:
  poll:
    shape: {kind: constant, users: 1}
    users:
      - kind: rest
        pacing: 1s
        tasks:
          - path: /api/a
"""


def rest_user(path: str, pacing: str = "1s") -> str:
    """A paced REST user polling ``path``, as a ``users:`` list item."""
    return (
        f"      - kind: rest\n        pacing: {pacing}\n        tasks:\n          - path: {path}\n"
    )


def scenario(
    name: str,
    *,
    schedule: str | None = None,
    shape: str = ONE_USER_FOR_A_SECOND,
    users: str = WS_MARKET_USER,
) -> str:
    """One scenario block under ``scenarios:`` (flow-style ``schedule`` and ``shape``)."""
    lines = f"  {name}:\n"
    if schedule is not None:
        lines += f"    schedule: {schedule}\n"
    return lines + f"    shape: {shape}\n    users:\n{users}"


def config_text(*scenarios: str, service: str = "") -> str:
    """A version-1 document of ``scenarios`` (from :func:`scenario`), with a ``service:`` body."""
    head = "version: 1\n"
    if service:
        head += "service:\n" + textwrap.indent(textwrap.dedent(service), "  ")
    return head + "scenarios:\n" + "".join(scenarios)


def document(body: str, *, version: int = 1) -> str:
    """A configuration document: ``version`` then ``body`` (dedented)."""
    return f"version: {version}\n" + textwrap.dedent(body)


def issues_of(text: str) -> list[ConfigIssue]:
    """The issues ``text`` is rejected with (fails the test when it is accepted)."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "test.yaml")
    return caught.value.issues


def only_issue(text: str) -> ConfigIssue:
    """The single issue ``text`` is rejected with."""
    issues = issues_of(text)
    assert len(issues) == 1, issues
    return issues[0]
