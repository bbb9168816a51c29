"""Walking a composed YAML node tree: mappings, their keys, and every issue with its line.

The loaders walk ``yaml.compose`` nodes rather than constructed Python objects
so that each value keeps its place in the file. A :class:`Reader` collects the
issues; :class:`Fields` reads the known keys of one mapping with converters
from :mod:`loadsvc.config._values`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar, overload

import yaml

from loadsvc.config._errors import ConfigIssue

if TYPE_CHECKING:
    from loadsvc.templating import Template
from loadsvc.config._values import (
    Converter,
    Invalid,
    choice,
    describe,
    is_null,
    join,
    line_of,
    suggest,
)

T = TypeVar("T")

_MERGE = "tag:yaml.org,2002:merge"

# --- walking mappings -------------------------------------------------------------

Entries = dict[str, tuple[yaml.Node, yaml.Node]]


class Reader:
    """Collects issues while the loaders walk one document."""

    def __init__(self, base_dir: str | None = None) -> None:
        self.issues: list[ConfigIssue] = []
        # The configuration file's directory (None: not read from a file): where the files it
        # names (a CSV of user data) are found, and a python user kind's module looked for first.
        self.base_dir = base_dir
        # Aliased nodes are walked once per use; their keys are checked only once.
        self._entries: dict[int, Entries] = {}
        # Every template read so far, checked against the names its scenario's data provides.
        self.templates: list[tuple[str, yaml.Node, Template]] = []

    def error(self, path: str, node: yaml.Node | None, message: str) -> None:
        """Record an issue at ``path``, on the line where ``node`` starts."""
        self.issues.append(ConfigIssue(path, line_of(node), message))

    def report(self, path: str, node: yaml.Node, exc: Invalid) -> None:
        """Record every problem of ``exc``, raised while reading ``node`` at ``path``."""
        for suffix, problem_node, message in exc.problems:
            self.error(path + suffix, problem_node or node, message)

    def entries(self, node: yaml.MappingNode, path: str) -> Entries:
        """The keys of a mapping node, with ``<<`` merges applied and duplicates reported."""
        cached = self._entries.get(id(node))
        if cached is not None:
            return cached
        self._entries[id(node)] = {}  # a mapping that merges itself sees no keys the 2nd time
        own: Entries = {}
        merged: Entries = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self._merge(value_node, path, merged)
                continue
            if not isinstance(key_node, yaml.ScalarNode) or is_null(key_node):
                self.error(path, key_node, f"a key must be a string, got {describe(key_node)}")
                continue
            key = str(key_node.value)
            if key in own:
                first = line_of(own[key][0])
                self.error(
                    join(path, key), key_node, f"duplicate key {key!r} (first at line {first})"
                )
                continue
            own[key] = (key_node, value_node)
        result = {**merged, **own}  # explicit keys win over merged ones
        self._entries[id(node)] = result
        return result

    def _merge(self, value: yaml.Node, path: str, into: Entries) -> None:
        """Apply a ``<<`` merge: earlier mappings win over later ones, like PyYAML."""
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.error(path, source, f"'<<' merges mappings, got {describe(source)}")
                continue
            for key, entry in self.entries(source, path).items():
                into.setdefault(key, entry)

    def mapping(
        self,
        node: yaml.Node,
        path: str,
        keys: Sequence[str],
        *,
        context: str = "",
        null_is_empty: bool = False,
        extensions: bool = False,
    ) -> Fields | None:
        """The keys of a mapping restricted to ``keys``; None (reported) if ``node`` is no mapping.

        ``context`` completes "unknown key 'x' <context>; expected one of ...".
        ``extensions`` ignores keys that start with ``x-`` (a place for YAML anchors).
        """
        if null_is_empty and is_null(node):
            return Fields(self, node, path, {})
        if not isinstance(node, yaml.MappingNode):
            self.error(path, node, f"expected a mapping, got {describe(node)}")
            return None
        entries = self.entries(node, path)
        for key, (key_node, _) in entries.items():
            if key not in keys and not (extensions and key.startswith("x-")):
                where = f" {context}" if context else ""
                self.error(
                    join(path, key),
                    key_node,
                    f"unknown key {key!r}{where}{suggest(key, keys)}; "
                    f"expected one of: {', '.join(keys)}",
                )
        return Fields(self, node, path, {k: v for k, v in entries.items() if k in keys})

    def kind(self, node: yaml.Node, path: str, kinds: Sequence[str]) -> str | None:
        """The ``kind`` of a mapping that has several variants; None (reported) if unusable."""
        if not isinstance(node, yaml.MappingNode):
            self.error(path, node, f"expected a mapping with a 'kind', got {describe(node)}")
            return None
        entry = self.entries(node, path).get("kind")
        if entry is None:
            self.error(
                join(path, "kind"), node, f"required key is missing; one of: {', '.join(kinds)}"
            )
            return None
        try:
            return choice(kinds)(entry[1])
        except Invalid as exc:
            self.report(join(path, "kind"), entry[1], exc)
            return None

    def variant(
        self, node: yaml.Node, path: str, keys: Mapping[str, Sequence[str]], what: str
    ) -> tuple[str, Fields] | None:
        """The ``kind`` of a mapping with variants (``keys``: each kind's keys) and its fields,
        restricted to that kind's keys; None (reported) if unusable."""
        kind = self.kind(node, path, tuple(keys))
        if kind is None:
            return None
        fields = self.mapping(node, path, keys[kind], context=f"for {what} kind {kind!r}")
        if fields is None:  # pragma: no cover - kind() checked it is a mapping
            return None
        return kind, fields


class Fields:
    """The known keys of one YAML mapping, read with converters that report into the reader."""

    def __init__(self, reader: Reader, node: yaml.Node, path: str, entries: Entries) -> None:
        self.reader = reader
        self.node = node
        self.path = path
        self._entries = entries

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def at(self, key: str) -> str:
        """The path of ``key`` in this mapping."""
        return join(self.path, key)

    def value_node(self, key: str) -> yaml.Node | None:
        """The node of ``key``'s value, if present."""
        entry = self._entries.get(key)
        return entry[1] if entry else None

    def key_node(self, key: str) -> yaml.Node | None:
        """The node of ``key`` itself, if present."""
        entry = self._entries.get(key)
        return entry[0] if entry else None

    def section(self, key: str, keys: Sequence[str]) -> Fields | None:
        """The optional mapping under ``key``, restricted to ``keys`` (null is empty); None
        when it is absent, or (reported) when it is not a mapping."""
        node = self.value_node(key)
        if node is None:
            return None
        return self.reader.mapping(node, self.at(key), keys, null_is_empty=True)

    def require(self, key: str) -> yaml.Node | None:
        """``key``'s value node; reports a missing key."""
        node = self.value_node(key)
        if node is None:
            self.reader.error(self.at(key), self.node, "required key is missing")
        return node

    @overload
    def get(self, key: str, convert: Converter[T], default: T, *, required: bool = ...) -> T: ...

    @overload
    def get(
        self, key: str, convert: Converter[T], default: None = ..., *, required: bool = ...
    ) -> T | None: ...

    def get(
        self, key: str, convert: Converter[T], default: T | None = None, *, required: bool = False
    ) -> T | None:
        """``key`` read by ``convert``; ``default`` when absent (reported if ``required``) or bad."""
        node = self.require(key) if required else self.value_node(key)
        if node is None:
            return default
        try:
            return convert(node)
        except Invalid as exc:
            self.reader.report(self.at(key), node, exc)
            return default
