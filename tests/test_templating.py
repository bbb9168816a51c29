"""``${name}`` templates: filled per user, typed when whole, text when embedded."""

from __future__ import annotations

import pytest

from loadsvc.templating import TemplateError, compile_template, text_of


def test_a_whole_placeholder_keeps_the_value_and_an_embedded_one_becomes_text() -> None:
    """A list stays a list alone; inside a path it is joined with commas."""
    template = compile_template(
        {"path": "/q?symbols=${symbols}&u=${user}", "symbols": "${symbols}", "n": 3, "t": True}
    )
    filled = template.fill({"symbols": ["VCB", "FPT"], "user": 2})
    assert filled == {
        "path": "/q?symbols=VCB,FPT&u=2",
        "symbols": ["VCB", "FPT"],
        "n": 3,
        "t": True,
    }


def test_filling_does_not_change_the_template_or_share_containers() -> None:
    """Two users' filled values are independent objects."""
    template = compile_template({"items": ["${a}", {"k": "${a}"}]})
    one, two = template.fill({"a": 1}), template.fill({"a": 2})
    assert one == {"items": [1, {"k": 1}]} and two == {"items": [2, {"k": 2}]}
    assert template.source == {"items": ["${a}", {"k": "${a}"}]}


def test_constant_templates_unescape_dollars_and_need_no_names() -> None:
    """A template without placeholders is constant; '$$' reads as '$'."""
    template = compile_template(["price $$5", 1])
    assert template.constant and template.fill({}) == ["price $5", 1]


@pytest.mark.parametrize("bad", ["a $ b", "${}", "${1a}", "${a b}", "$"])
def test_malformed_placeholders_are_refused(bad: str) -> None:
    """A lone '$' or an invalid name raises TemplateError naming the string."""
    with pytest.raises(TemplateError, match="in '"):
        compile_template(bad)


def test_text_of_writes_values_as_a_url_or_message_would() -> None:
    """Booleans lower-case, None empty, nested lists flattened with commas."""
    assert [text_of(True), text_of(None), text_of([1, [2, 3]]), text_of(1.5)] == [
        "true", "", "1,2,3", "1.5",
    ]  # fmt: skip
