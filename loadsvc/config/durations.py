"""Durations as configuration writes them: ``500ms``, ``30s``, ``2m``, ``1h30m`` or plain seconds."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# One or more "<number><unit>" parts, largest unit first is customary but not required.
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ms|s|m|h|d))+")
_PLAIN = re.compile(r"\d+(?:\.\d+)?|\.\d+")

_EXPECTED = "expected a duration such as '2s' or '500ms'"


def parse_duration(value: object) -> float:
    """Return ``value`` as a number of seconds.

    Accepts a non-negative int or float (seconds) or a string made of
    ``<number><unit>`` parts with units ``ms``, ``s``, ``m``, ``h``, ``d``
    (``"500ms"``, ``"1.5s"``, ``"1h30m"``); a string of digits alone is seconds.
    Raises :class:`ValueError` with a message that says what was expected.
    """
    if isinstance(value, bool):
        raise ValueError(f"{_EXPECTED}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        if math.isnan(seconds) or math.isinf(seconds):
            raise ValueError(f"{_EXPECTED}, got {value!r}")
        if seconds < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return seconds
    if isinstance(value, str):
        text = value.strip()
        if _PLAIN.fullmatch(text):
            return float(text)
        if _WHOLE.fullmatch(text):
            return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
        if text.startswith("-") and (_WHOLE.fullmatch(text[1:]) or _PLAIN.fullmatch(text[1:])):
            raise ValueError(f"a duration cannot be negative, got {value!r}")
    raise ValueError(f"{_EXPECTED}, got {value!r}")


def format_duration(seconds: float) -> str:
    """The shortest config spelling of ``seconds`` (``0.2`` -> ``"200ms"``, ``90`` -> ``"1m30s"``)."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    whole, parts = seconds, []
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        count = int(whole // size)
        if count:
            parts.append(f"{count}{unit}")
            whole -= count * size
    if whole or not parts:
        parts.append(f"{round(whole, 6):g}s")
    return "".join(parts)
