"""Hostile per-user data files: duplicate columns, a BOM, formula cells; a config error
naming the file and what is wrong, or read exactly as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadsvc.config import ConfigError, load_config


def config(tmp_path: Path, data: str) -> Path:
    """A config whose scenario ``s`` has this ``data`` section (YAML lines) and a user
    sending ``${sym}``."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 1}\n"
        f"    data:\n{data}"
        "    users:\n      - {kind: rest, pacing: 1s, tasks: [{path: '/q/${sym}'}]}\n"
    )
    return path


def issues(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


def test_a_csv_with_a_duplicate_column_is_an_error_naming_it(tmp_path: Path) -> None:
    """``sym,price,sym``: the second ``sym`` would silently replace the first; refused,
    naming the column and the file."""
    (tmp_path / "d.csv").write_text("sym,price,sym\nVCB,1,FPT\n")
    messages = issues(config(tmp_path, "      csv: d.csv\n"))
    assert any("d.csv" in m and "'sym'" in m and "twice" in m for m in messages), messages


def test_a_bom_and_formula_cells_are_read_as_written(tmp_path: Path) -> None:
    """A UTF-8 BOM is not part of the first column's name; ``=cmd|' /C calc'!A0`` is a
    value like any other (sent escaped in the path, never evaluated)."""
    (tmp_path / "d.csv").write_bytes("\ufeffsym\n=cmd|' /C calc'!A0\n".encode())
    spec = load_config(config(tmp_path, "      csv: d.csv\n")).scenario("s")
    assert spec.data is not None and spec.data.rows == ({"sym": "=cmd|' /C calc'!A0"},)
