"""Per-user values in what users send: ``${name}`` placeholders in paths, queries, bodies and
WS messages.

A template is any JSON-like value (a string, a number, a list, a mapping). Its strings may
hold placeholders, filled from one user's values (a row of the scenario's ``data``, plus
the built-in names ``user`` and ``scenario``):

>>> t = compile_template({"op": "subscribe", "symbols": "${symbols}", "id": "u${user}"})
>>> sorted(t.names)
['symbols', 'user']
>>> t.fill({"symbols": ["VCB", "FPT"], "user": 7})
{'op': 'subscribe', 'symbols': ['VCB', 'FPT'], 'id': 'u7'}

A string that is one placeholder and nothing else takes the value as it is (a list stays a
list, a number a number); inside a longer string a value is written as text, a list joined
with commas (``/quotes?symbols=${symbols}`` → ``/quotes?symbols=VCB,FPT``). ``$$`` is a
literal ``$``. Mapping keys are not templates.

Compiled once (at build time), filled per user: ``fill`` walks a prepared tree, it never
parses again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUILTIN_NAMES", "Template", "TemplateError", "compile_template", "text_of"]

# What every user has without any data: its number in the run (1, 2, ...) and its scenario.
BUILTIN_NAMES = frozenset({"user", "scenario"})
_TOKEN = re.compile(r"\$\{([^}]*)\}|\$\$|\$")
# A value's name; dotted names (``frame.id``) are fields of what a reply answers.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*")


class TemplateError(ValueError):
    """A malformed placeholder (the message says which and where in the string)."""


def text_of(value: Any) -> str:
    """A value as it reads inside a longer string: lists joined by commas, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(text_of(v) for v in value)
    if value is None:
        return ""
    return str(value)


# A compiled string: literal text and names, alternating (parts[0] literal, parts[1] a name...).
@dataclass(frozen=True)
class _Text:
    parts: tuple[str, ...]

    def fill(self, values: Mapping[str, Any]) -> Any:
        parts = self.parts
        if len(parts) == 3 and not parts[0] and not parts[2]:
            return values[parts[1]]  # the whole string is one placeholder: keep the type
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            out.append(text_of(values[parts[i]]))
            out.append(parts[i + 1])
        return "".join(out)


def _compile_text(source: str) -> str | _Text:
    parts: list[str] = []
    literal: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(source):
        literal.append(source[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if token == "$$":
            literal.append("$")
        elif token == "$":
            raise TemplateError(
                f"a lone '$' at {match.start()} in {source!r}: write '$$' for a dollar sign "
                "or '${name}' for a value"
            )
        else:
            name = match.group(1).strip()
            if not _NAME.fullmatch(name):
                raise TemplateError(f"invalid placeholder {token!r} in {source!r}")
            parts.append("".join(literal))
            parts.append(name)
            literal = []
    literal.append(source[pos:])
    if not parts:
        return "".join(literal)  # nothing to fill: the string itself (with $$ unescaped)
    parts.append("".join(literal))
    return _Text(tuple(parts))


def _compile(value: Any, names: set[str]) -> Any:
    if isinstance(value, str):
        compiled = _compile_text(value)
        if isinstance(compiled, _Text):
            names.update(compiled.parts[1::2])
        return compiled
    if isinstance(value, Mapping):
        return {k: _compile(v, names) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_compile(v, names) for v in value]
    return value


def _fill(node: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(node, _Text):
        return node.fill(values)
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    return node


@dataclass(frozen=True)
class Template:
    """A value with placeholders, compiled once; ``names`` are those it needs."""

    source: Any
    # Not in the repr: a set's order changes with the process (string hashing), and a
    # spec's repr is the scenario fingerprint that baselines compare across restarts.
    names: frozenset[str] = field(repr=False)
    _tree: Any = field(repr=False)

    @property
    def constant(self) -> bool:
        """Whether the template has no placeholder (the same for every user)."""
        return not self.names

    def fill(self, values: Mapping[str, Any]) -> Any:
        """The value with every placeholder replaced from ``values`` (KeyError: a missing name,
        which config validation rules out)."""
        return _fill(self._tree, values) if self.names else self._tree

    def missing(self, known: frozenset[str] | set[str]) -> list[str]:
        """The names this template needs that ``known`` lacks, sorted (for a config error)."""
        return sorted(self.names - known)


def compile_template(source: Any) -> Template:
    """Compile ``source`` (raises :class:`TemplateError` on a malformed placeholder)."""
    names: set[str] = set()
    tree = _compile(source, names)
    return Template(source, frozenset(names), tree)
