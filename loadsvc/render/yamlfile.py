"""Deterministic YAML output with a "how this file was made" header."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL, templates) as ``|`` blocks so diffs stay readable."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def comment(lines: Iterable[str]) -> str:
    """``lines`` as a YAML comment block (empty lines become a bare ``#``)."""
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def dump(data: object, header: Iterable[str] = ()) -> str:
    """``data`` as YAML, keys in insertion order, after the comment ``header``."""
    body = yaml.dump(
        data,
        Dumper=_BlockDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000,
    )
    return comment(header) + body
