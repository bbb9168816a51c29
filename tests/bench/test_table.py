"""bench/table.py: the grids bench scripts print."""

from __future__ import annotations

import pytest

from bench.table import Table


def test_print_both_prints_the_text_a_blank_line_then_the_markdown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """print_both prints the aligned text, one blank line, then the Markdown table."""
    table = Table("Title", ["name", "value"], [["a", "1"], ["bb", "22"]], note="a note")
    table.print_both()
    shown = capsys.readouterr().out
    assert shown == table.text() + "\n\n" + table.markdown() + "\n"
    assert "| bb | 22 |" in shown and "bb       22" in shown
