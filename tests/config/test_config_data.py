"""A scenario's per-user ``data``: inline rows or a CSV beside the config, and the checks on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadsvc.config import ConfigError, load_config, parse_config
from loadsvc.config._data import read_template
from loadsvc.config._nodes import Reader

BASE = """\
version: 1
scenarios:
  s:
    shape: {kind: constant, users: 3, duration: 1s}
    users:
      - kind: rest
        think_time: {min: 1s, max: 1s}
        tasks: [{path: /api/x}]
"""


def with_data(data: str) -> str:
    return BASE + "    data:\n" + "".join(f"      {line}\n" for line in data.splitlines())


def issues_of(text: str, source: str = "c.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source)
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


def test_inline_rows_are_read_typed_with_their_order() -> None:
    """Inline rows keep YAML types (lists, numbers) and the order given."""
    spec = parse_config(
        with_data(
            "order: unique\nrows:\n  - {symbols: [VCB, FPT], n: 2}\n  - {symbols: [], n: 0}\n"
            "  - {symbols: [HPG], n: 1}"
        ),
        "c.yaml",
    ).scenario("s")
    assert spec.data is not None
    assert spec.data.order == "unique" and spec.data.source == "rows"
    assert spec.data.rows[0] == {"symbols": ["VCB", "FPT"], "n": 2}
    assert spec.data.names == {"symbols", "n"}


def test_csv_is_read_relative_to_the_config_file(tmp_path: Path) -> None:
    """A CSV named by the config is found beside it, its header naming the values."""
    (tmp_path / "accounts.csv").write_text("username,symbols\nalice,VCB\nbob,FPT\n", "utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(with_data("csv: accounts.csv"), "utf-8")
    data = load_config(config).scenario("s").data
    assert data is not None and data.order == "round_robin"
    assert data.rows == (
        {"username": "alice", "symbols": "VCB"},
        {"username": "bob", "symbols": "FPT"},
    )
    assert data.source == str(tmp_path / "accounts.csv")


@pytest.mark.parametrize(
    ("data", "files", "expected"),
    [
        ("rows: []", {}, "data.rows: expected a non-empty list of mappings"),
        ("rows: [{a: 1}]\ncsv: x.csv", {}, "data: give exactly one of 'rows'"),
        ("order: sorted\nrows: [{a: 1}]", {}, "data.order: expected one of round_robin"),
        ("rows: [{a: 1}, {b: 2}]", {}, "data.rows: row 2 does not have the names of row 1"),
        ("rows: [{user: 1}]", {}, "data.rows: value name 'user' is built in"),
        ("rows: [{a-b: 1}]", {}, "data.rows: value name 'a-b' cannot be a placeholder"),
        ("order: unique\nrows: [{a: 1}, {a: 2}]", {}, "data.order: 'unique' gives each live user"),
        ("csv: missing.csv", {}, "data.csv: missing.csv: No such file or directory"),
        ("csv: empty.csv", {"empty.csv": "a,b\n"}, "data.csv: empty.csv: no rows"),
        ("csv: ragged.csv", {"ragged.csv": "a,b\n1\n"}, "data.csv: ragged.csv: line 2 does not"),
        ("csv: bin.csv", {"bin.csv": b"a\n\xff\n"}, "data.csv: bin.csv: not UTF-8"),
    ],
)
def test_bad_data_is_named_by_field_and_file(
    tmp_path: Path, data: str, files: dict[str, str | bytes], expected: str
) -> None:
    """Each broken data section is a config error at its field (the file named)."""
    for name, content in files.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, "utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(with_data(data), "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    messages = [f"{i.path}: {i.message}" for i in caught.value.issues]
    assert any(m.startswith("scenarios.s." + expected) for m in messages), messages
    assert str(config) in str(caught.value)


def test_a_template_naming_a_value_no_row_has_is_an_error_on_its_line() -> None:
    """Templates are checked against the scenario's data and the built-in names."""
    reader = Reader()
    import yaml

    from loadsvc.config._data import check_templates
    from loadsvc.config._nodes import Fields
    from loadsvc.config.spec import DataSpec

    node = yaml.compose("{msg: {op: sub, s: '${symbols}', who: 'u${user}', x: '${nope}'}}")
    fields = reader.mapping(node, "g", ("msg",))
    assert isinstance(fields, Fields)
    template = read_template(fields, "msg")
    assert template is not None and template.names == {"symbols", "user", "nope"}
    check_templates(reader, 0, DataSpec(rows=({"symbols": ["A"]},)), "scenarios.s.data")
    (issue,) = reader.issues
    assert issue.path == "g.msg" and issue.line == 1
    assert "unknown value 'nope'" in issue.message and "symbols" in issue.message


def test_a_malformed_placeholder_is_reported_where_it_is() -> None:
    """A lone '$' or a bad name in a template is an error, not a literal."""
    import yaml

    from loadsvc.config._nodes import Fields

    reader = Reader()
    fields = reader.mapping(yaml.compose("{a: 'cost $5', b: '${1x}', c: 'ok $$5'}"), "g", "abc")
    assert isinstance(fields, Fields)
    assert read_template(fields, "a") is None and read_template(fields, "b") is None
    ok = read_template(fields, "c")
    assert ok is not None and ok.fill({}) == "ok $5"
    assert [i.path for i in reader.issues] == ["g.a", "g.b"]
