"""Helpers for the configuration tests: small valid documents to vary."""

from __future__ import annotations

import textwrap

import pytest

from loadsvc.config import ConfigError, ConfigIssue, parse_config

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
