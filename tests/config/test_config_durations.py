"""Durations: numbers of seconds or strings with units."""

from __future__ import annotations

import pytest

from loadsvc.config import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("1d", 86400.0),
        ("2m30s", 150.0),
        (" 10s ", 10.0),
        ("45", 45.0),
        (15, 15.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts(text: object, seconds: float) -> None:
    """Numbers are seconds; strings combine value-unit parts (ms, s, m, h, d)."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "junk", ["fast", "", "10 s", "1h 30m", "s", "10x", "1.s", "ms500", None, True, [1], "nan"]
)
def test_parse_duration_rejects_junk(junk: object) -> None:
    """Anything else is a ValueError that says what a duration looks like."""
    with pytest.raises(ValueError, match=r"expected a duration such as '2s' or '500ms', got "):
        parse_duration(junk)


@pytest.mark.parametrize("negative", [-1, -0.5, "-2s", "-3"])
def test_parse_duration_rejects_negative(negative: object) -> None:
    """A negative duration is refused with its own message."""
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(negative)


def test_parse_duration_rejects_infinity() -> None:
    """Infinite and NaN floats are not durations."""
    for value in (float("inf"), float("nan")):
        with pytest.raises(ValueError):
            parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "200ms"), (0.1, "100ms"), (90, "1m30s"), (5400, "1h30m"), (1.5, "1.5s"), (0, "0s")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    """format_duration spells seconds the way a configuration would, and parses back."""
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
