"""Reporting: every issue at once, each with its path and line; file and YAML errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from loadsvc.config import ConfigError, ConfigIssue, load_config, parse_config
from tests.support.configs import document, issues_of, only_issue

SEVERAL_ERRORS = document(
    """\
    scenarios:
      foreign_flow:
        shape: {kind: constant, users: 0}
        users:
          - kind: rest
            pacing: fast
            tasks:
              - path: api/foreign
                method: FETCH
      burst:
        schedule: {kind: interval}
        shape:
          kind: ramping
          stages:
            - {duration: 30s, target: -5}
        users:
          - kind: ws_stream
            path: /ws/market
            conect_timeout: 5s
    """,
    version=2,
)


def test_several_errors_are_all_reported_with_path_and_line() -> None:
    """A file with several mistakes reports each of them, where it is, in file order."""
    found = [(i.line, i.path) for i in issues_of(SEVERAL_ERRORS)]
    assert found == [
        (1, "version"),
        (4, "scenarios.foreign_flow.shape.users"),
        (7, "scenarios.foreign_flow.users[0].pacing"),
        (9, "scenarios.foreign_flow.users[0].tasks[0].path"),
        (10, "scenarios.foreign_flow.users[0].tasks[0].method"),
        (12, "scenarios.burst.schedule.every"),
        (16, "scenarios.burst.shape.stages[0].target"),
        (20, "scenarios.burst.users[0].conect_timeout"),
    ]


def test_error_string_is_one_line_per_issue() -> None:
    """str(ConfigError) is FILE:LINE: PATH: MESSAGE, one line per issue."""
    with pytest.raises(ConfigError) as caught:
        parse_config(SEVERAL_ERRORS, "seed.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.issues) == 8
    assert lines[2] == (
        "seed.yaml:7: scenarios.foreign_flow.users[0].pacing: "
        "expected a duration such as '2s' or '500ms', got 'fast'"
    )
    assert caught.value.source == "seed.yaml"


def test_issue_format_leaves_out_unknown_parts() -> None:
    """An issue without a line or a path prints only what is known."""
    assert ConfigIssue("", None, "boom").format("f.yaml") == "f.yaml: boom"
    assert ConfigIssue("a.b", None, "boom").format("f.yaml") == "f.yaml: a.b: boom"
    assert ConfigIssue("", 3, "boom").format("f.yaml") == "f.yaml:3: boom"


def test_config_error_survives_pickling() -> None:
    """A ConfigError keeps its issues and source through pickle (e.g. across processes)."""
    error = ConfigError([ConfigIssue("version", 1, "bad")], "f.yaml")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.issues, copy.source, str(copy)) == (error.issues, error.source, str(error))


def test_yaml_syntax_error_has_its_line() -> None:
    """Invalid YAML is a ConfigError whose issue carries the line of the problem."""
    issue = only_issue("version: 1\nscenarios:\n  a:\n    shape: x\n   bad: y\n")
    assert issue.line == 5
    assert issue.message.startswith("invalid YAML: ")


def test_several_documents_are_refused() -> None:
    """A stream of several YAML documents is an error at the second one."""
    issue = only_issue("version: 1\n---\nversion: 1\n")
    assert issue.line == 2
    assert "single document" in issue.message


def test_empty_document_is_refused() -> None:
    """An empty file is an error, not an empty configuration."""
    assert only_issue("# nothing here\n").message == "the configuration is empty"


def test_top_level_must_be_a_mapping() -> None:
    """A document that is a list is refused."""
    assert only_issue("- 1\n- 2\n").message == "expected a mapping, got a list"


def test_duplicate_yaml_key_is_an_error() -> None:
    """A key repeated in one mapping is reported at the repeat, naming the first line."""
    issue = only_issue(
        document(
            """\
            scenarios:
              poll:
                shape: {kind: constant, users: 1}
                shape: {kind: constant, users: 2}
                users: [{kind: rest, pacing: 1s, tasks: [{path: /a}]}]
            """
        )
    )
    assert (issue.path, issue.line) == ("scenarios.poll.shape", 5)
    assert issue.message == "duplicate key 'shape' (first at line 4)"


def test_duplicate_scenario_name_is_an_error() -> None:
    """Two scenarios with the same name are a duplicate key too."""
    text = document(
        """\
        scenarios:
          poll: &s
            shape: {kind: constant, users: 1}
            users: [{kind: rest, pacing: 1s, tasks: [{path: /a}]}]
          poll: *s
        """
    )
    issue = only_issue(text)
    assert (issue.path, issue.line) == ("scenarios.poll", 6)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that does not exist is a ConfigError naming the file."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.source == str(missing)
    assert str(caught.value) == f"{missing}: no such configuration file"


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    """A directory given as the configuration file is a ConfigError too."""
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is a ConfigError."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("description: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    """load_config parses the file at a path and records it as the source."""
    path = tmp_path / "mine.yaml"
    path.write_text(
        document(
            "scenarios:\n  poll:\n    shape: {kind: constant, users: 1}\n"
            "    users: [{kind: rest, pacing: 1s, tasks: [{path: /a}]}]\n"
        )
    )
    config = load_config(str(path))
    assert config.source == str(path)
    assert [s.name for s in config.scenarios] == ["poll"]


def test_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    """Issues from a file are printed with its path."""
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nscenarios: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:2: scenarios: at least one scenario is required"
