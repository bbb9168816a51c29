"""Converters from one YAML node to one typed value, and how nodes are named in messages.

A converter returns the value or raises :class:`Invalid` with what is wrong;
:mod:`loadsvc.config._nodes` turns that into issues with a path and a line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

import yaml
from yaml.constructor import SafeConstructor

from loadsvc.config.durations import parse_duration

T = TypeVar("T")

Converter = Callable[[yaml.Node], T]

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB)?")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_MIN_SIZE = 1024
_PERCENT = re.compile(r"\d+(\.\d+)?\s*%")
_MAX_SIZE = 1024**3  # a cap past memory would protect nothing

# Only its stateless scalar constructors are used, so one instance serves every parse.
_SCALARS = SafeConstructor()

Problem = tuple[str, yaml.Node | None, str]


class Invalid(Exception):
    """A node that does not fit; ``problems`` are (path suffix, node or None, message)."""

    def __init__(self, message: str = "", *, problems: list[Problem] | None = None) -> None:
        self.problems: list[Problem] = problems if problems is not None else [("", None, message)]
        super().__init__(message or "; ".join(p[2] for p in self.problems))


def join(path: str, key: str | int) -> str:
    """``path`` extended by a mapping key (``a.b`` or ``a['/x']``) or a list index (``a[0]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def line_of(node: yaml.Node | None) -> int | None:
    """The 1-based line where ``node`` starts."""
    if node is None or node.start_mark is None:
        return None
    return int(node.start_mark.line) + 1


def is_null(node: yaml.Node) -> bool:
    """Whether ``node`` is a YAML null (``~``, ``null`` or nothing)."""
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def scalar(node: yaml.Node) -> object:
    """The Python value of a scalar node; a list or mapping is :class:`Invalid`."""
    if not isinstance(node, yaml.ScalarNode):
        raise Invalid(f"expected a single value, got {describe(node)}")
    if node.tag == _NULL:
        return None
    if node.tag == _BOOL:
        return _SCALARS.construct_yaml_bool(node)
    if node.tag == _INT:
        return _SCALARS.construct_yaml_int(node)
    if node.tag == _FLOAT:
        return _SCALARS.construct_yaml_float(node)
    return str(node.value)


def describe(node: yaml.Node) -> str:
    """How an error message shows what was found: ``'fast'``, ``5``, ``null``, ``a list``."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "null"
    if node.tag in (_BOOL, _INT, _FLOAT):
        return str(node.value)
    return repr(str(node.value))


def suggest(word: str, options: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` when ``word`` is close to one of ``options``, else ``""``."""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def integer(minimum: int | None = None, maximum: int | None = None) -> Converter[int]:
    """An integer, optionally bounded (inclusive)."""

    def convert(node: yaml.Node) -> int:
        value = scalar(node)
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"expected an integer, got {describe(node)}")
        if minimum == 1 and maximum is None and value < 1:
            raise Invalid(f"must be a positive integer, got {value}")
        if minimum == 0 and maximum is None and value < 0:
            raise Invalid(f"must not be negative, got {value}")
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            raise Invalid(f"must be between {minimum} and {maximum}, got {value}")
        if minimum is not None and value < minimum:
            raise Invalid(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise Invalid(f"must be at most {maximum}, got {value}")
        return value

    return convert


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Converter[float]:
    """A number (int or float), optionally within bounds (``*_open``: the bound is excluded)."""

    def convert(node: yaml.Node) -> float:
        value = scalar(node)
        if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
            raise Invalid(f"expected a number, got {describe(node)}")
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            if low is not None and high is not None:
                span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
                raise Invalid(f"must be in {span}, got {value:g}")
            if low is not None:
                relation = "greater than" if low_open else "at least"
                raise Invalid(f"must be {relation} {low:g}, got {value:g}")
            relation = "less than" if high_open else "at most"
            raise Invalid(f"must be {relation} {high:g}, got {value:g}")
        return float(value)

    return convert


def boolean() -> Converter[bool]:
    """``true`` or ``false`` (YAML 1.1 spellings such as ``yes`` included)."""

    def convert(node: yaml.Node) -> bool:
        value = scalar(node)
        if not isinstance(value, bool):
            raise Invalid(f"expected true or false, got {describe(node)}")
        return value

    return convert


def percent(high: float) -> Converter[float]:
    """A share as ``50%`` or as a number (``0.5``), from 0 to ``high`` (as a fraction)."""

    def convert(node: yaml.Node) -> float:
        value = scalar(node)
        if isinstance(value, str) and _PERCENT.fullmatch(value.strip()):
            share = float(value.strip()[:-1].strip()) / 100.0
        elif isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            share = float(value)
        else:
            raise Invalid(
                f"expected a percentage such as 50% or a fraction such as 0.5, got {describe(node)}"
            )
        if not 0.0 <= share <= high:
            raise Invalid(f"must be from 0% to {high * 100:g}%, got {describe(node)}")
        return share

    return convert


def duration(*, allow_zero: bool = False) -> Converter[float]:
    """A duration in seconds (see :func:`~loadsvc.config.durations.parse_duration`)."""

    def convert(node: yaml.Node) -> float:
        value = scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if value is None or isinstance(value, bool):
            raise Invalid(f"expected a duration such as '2s' or '500ms', got {describe(node)}")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        if seconds == 0 and not allow_zero:
            raise Invalid(f"must be longer than 0, got {describe(node)}")
        return seconds

    return convert


def size() -> Converter[int]:
    """A size in bytes: an integer, or ``512KiB``, ``10MiB``, ``1GiB``; 1 KiB to 1 GiB."""

    def convert(node: yaml.Node) -> int:
        value = scalar(node)
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        else:
            match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
            if match is None:
                raise Invalid(
                    f"expected a size such as 10MiB, 512KiB or a number of bytes, "
                    f"got {describe(node)}"
                )
            n = int(match[1]) * _SIZE_UNITS[match[2]]
        if not _MIN_SIZE <= n <= _MAX_SIZE:
            raise Invalid(f"must be between 1KiB and 1GiB, got {describe(node)}")
        return n

    return convert


def text(*, nonempty: bool = True) -> Converter[str]:
    """A string. Plain scalars count as written (``on`` stays ``"on"``, not ``True``)."""

    def convert(node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode) or is_null(node):
            raise Invalid(f"expected a string, got {describe(node)}")
        value = str(node.value)
        if nonempty and not value.strip():
            raise Invalid("must not be empty")
        return value

    return convert


def url_path() -> Converter[str]:
    """A request path: a string that starts with ``/`` (a query string is allowed)."""
    as_text = text()

    def convert(node: yaml.Node) -> str:
        value = as_text(node)
        if not value.startswith("/"):
            raise Invalid(f"must start with '/', got {value!r}")
        return value

    return convert


def choice(options: Sequence[str], *, fold: Callable[[str], str] | None = None) -> Converter[str]:
    """One of ``options`` (after ``fold``, e.g. ``str.upper``)."""
    as_text = text()

    def convert(node: yaml.Node) -> str:
        value = as_text(node)
        folded = fold(value) if fold else value
        if folded not in options:
            hint = suggest(folded, options)
            raise Invalid(f"expected one of {', '.join(options)}, got {value!r}{hint}")
        return folded

    return convert


def nullable(convert: Converter[T]) -> Converter[T | None]:
    """``convert``, or None for a YAML null."""

    def maybe(node: yaml.Node) -> T | None:
        return None if is_null(node) else convert(node)

    return maybe


def list_of(item: Converter[T], *, nonempty: bool = False) -> Converter[tuple[T, ...]]:
    """A YAML list whose every item ``item`` accepts; reports every bad item."""

    def convert(node: yaml.Node) -> tuple[T, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise Invalid(f"expected a list, got {describe(node)}")
        if nonempty and not node.value:
            raise Invalid("must not be empty")
        values: list[T] = []
        problems: list[Problem] = []
        for index, child in enumerate(node.value):
            try:
                values.append(item(child))
            except Invalid as exc:
                problems += [(f"[{index}]{s}", n or child, m) for s, n, m in exc.problems]
        if problems:
            raise Invalid(problems=problems)
        return tuple(values)

    return convert


def one_or_list(item: Converter[T]) -> Converter[tuple[T, ...]]:
    """A single value or a non-empty list of them."""
    as_list = list_of(item, nonempty=True)

    def convert(node: yaml.Node) -> tuple[T, ...]:
        if isinstance(node, yaml.SequenceNode):
            return as_list(node)
        return (item(node),)

    return convert


def plain(*, depth: int = 16) -> Converter[object]:
    """Any YAML value as plain Python (mappings with string keys, lists, scalars typed as YAML
    types them): a message or a row of data, taken as written. Anchors and tags beyond the
    core schema are refused, and so is nesting deeper than ``depth``."""

    def convert(node: yaml.Node, level: int = 0) -> object:
        if level > depth:
            raise Invalid(f"nested deeper than {depth} levels")
        if isinstance(node, yaml.MappingNode):
            out: dict[str, object] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                    raise Invalid(f"expected a string key, got {describe(key_node)}")
                if key_node.value == "<<":
                    raise Invalid("'<<' merges are not supported inside a value")
                out[str(key_node.value)] = convert(value_node, level + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [convert(child, level + 1) for child in node.value]
        return scalar(node)

    return convert
