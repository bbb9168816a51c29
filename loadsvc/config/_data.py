"""Reading a scenario's ``data`` (per-user values) and the templates that use them.

``data`` gives rows of named values, inline or from a CSV file beside the configuration::

    data:
      order: unique            # round_robin (default), unique or random
      csv: accounts.csv        # a header row names the values; or:
      rows:
        - {username: alice, symbols: [VCB, FPT]}

Anything a user sends may use them as ``${name}`` (see :mod:`loadsvc.templating`). Every
template is compiled where it is read (:func:`read_template`) and checked once the scenario's
data is known (:func:`check_templates`): a name no row provides is an error on the line that
uses it, never a KeyError in the middle of a run.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import yaml

from loadsvc.config._nodes import Fields, Reader
from loadsvc.config._templates import read_template as read_template
from loadsvc.config._templates import read_template_at as read_template_at
from loadsvc.config._values import Invalid, choice, plain, text
from loadsvc.config.spec import DataOrder, DataSpec
from loadsvc.templating import BUILTIN_NAMES, Template, text_of

__all__ = [
    "DATA_KEYS", "HEADERS_SUFFIX", "check_templates", "header_problem", "read_data",
    "read_template", "read_template_at",
]  # fmt: skip

DATA_KEYS = ("order", "rows", "csv")
ORDERS: tuple[DataOrder, ...] = ("round_robin", "unique", "random")
MAX_CSV_BYTES = 16 * 1024 * 1024  # rows of per-user values, not a dataset
MAX_ROWS = 1_000_000


def check_templates(reader: Reader, since: int, data: DataSpec | None, where: str) -> None:
    """Every template read since index ``since`` uses only names ``data`` provides (or the
    built-in ones), and headers filled from every row can be sent; ``where`` names the data
    section in the message."""
    known = BUILTIN_NAMES | (data.names if data is not None else frozenset())
    for path, node, template in reader.templates[since:]:
        missing = template.missing(known)
        if missing:
            have = ", ".join(sorted(known))
            source = f"no {where}" if data is None else f"{where} has {have}"
            reader.error(
                path,
                node,
                f"unknown value {', '.join(map(repr, missing))} in a template ({source}; "
                f"built-in: {', '.join(sorted(BUILTIN_NAMES))})",
            )
        elif path.endswith(HEADERS_SUFFIX):
            problem = header_problem(template, data.rows if data is not None else ({},), where)
            if problem is not None:
                reader.error(path, node, problem)


# The path of a request's headers template (``....tasks[0].headers``, ``login.headers``).
HEADERS_SUFFIX = "headers"
# What HTTP/1.1 can carry in a header value as loadsvc writes it (latin-1, no CR, LF, NUL).
_UNSENDABLE = re.compile(r"[\r\n\0]|[^\x00-\xff]")


def header_problem(
    template: Template,
    rows: Sequence[Mapping[str, Any]],
    where: str,
    extra: Mapping[str, Any] | None = None,
) -> str | None:
    """Why the headers ``template`` (a mapping) cannot be sent when filled from one of
    ``rows`` (and ``extra`` values, e.g. secrets), or None. A value with CR or LF would
    inject a header: a config error before any load, naming the header, the values it is
    filled from and the row, never the value (it may be a secret)."""
    extra = extra or {}
    from_rows = template.names - set(extra) - BUILTIN_NAMES
    for index, row in enumerate(rows if from_rows else rows[:1], start=1):
        filled = template.fill({**row, **extra, "user": index, "scenario": ""})
        for name, value in filled.items():
            if _UNSENDABLE.search(text_of(value)):
                used = template.fill({k: f"${{{k}}}" for k in template.names})[name]
                source = f" (filled as {used!r} from row {index} of {where})" if from_rows else ""
                return (
                    f"the value of header {name!r}{source} has a CR, LF or NUL, or a character "
                    "outside latin-1: HTTP/1.1 cannot send it"
                )
    return None


def read_data(
    reader: Reader, node: yaml.Node, path: str, peak_users: int | None
) -> DataSpec | None:
    """The ``data`` section at ``path``; None when absent-equivalent or (reported) broken."""
    fields = reader.mapping(node, path, DATA_KEYS, context="in data")
    if fields is None:
        return None
    order = cast(DataOrder, fields.get("order", choice(ORDERS), "round_robin"))
    has_rows, has_csv = "rows" in fields, "csv" in fields
    if has_rows == has_csv:
        reader.error(path, node, "give exactly one of 'rows' (inline) or 'csv' (a file)")
        return None
    if has_rows:
        rows, source = _inline_rows(fields), "rows"
    else:
        rows, source = _csv_rows(fields)
    if rows is None:
        return None
    if order == "unique" and peak_users is not None and len(rows) < peak_users:
        reader.error(
            fields.at("order"),
            fields.value_node("order"),
            f"'unique' gives each live user its own row, but there are {len(rows)} rows "
            f"for up to {peak_users} users; add rows or use round_robin",
        )
    return DataSpec(rows=rows, order=order, source=source)


def _check_names(fields: Fields, key: str, rows: list[dict[str, Any]]) -> bool:
    """Every row has the same names, each a usable placeholder name (reported)."""
    first = list(rows[0])
    problems = []
    for name in first:
        if not name.isidentifier():
            problems.append(f"value name {name!r} cannot be a placeholder: use letters, digits, _")
        elif name in BUILTIN_NAMES:
            problems.append(f"value name {name!r} is built in; rename the column")
    for index, row in enumerate(rows[1:], start=2):
        if set(row) != set(first):
            diff = sorted(set(row) ^ set(first))
            problems.append(f"row {index} does not have the names of row 1 (differs in {diff})")
            break
    for problem in problems:
        fields.reader.error(fields.at(key), fields.value_node(key), problem)
    return not problems


def _inline_rows(fields: Fields) -> tuple[dict[str, object], ...] | None:
    node = fields.value_node("rows")
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        fields.reader.error(fields.at("rows"), node, "expected a non-empty list of mappings")
        return None
    try:
        rows = plain()(node)
    except Invalid as exc:
        fields.reader.report(fields.at("rows"), node, exc)
        return None
    assert isinstance(rows, list)
    if not all(isinstance(row, dict) and row for row in rows):
        fields.reader.error(fields.at("rows"), node, "every row must be a non-empty mapping")
        return None
    if len(rows) > MAX_ROWS or not _check_names(fields, "rows", rows):
        return None
    return tuple(rows)


def _csv_rows(fields: Fields) -> tuple[tuple[dict[str, object], ...] | None, str]:
    name = fields.get("csv", text(), required=True)
    if name is None:
        return None, ""
    base = fields.reader.base_dir or os.getcwd()
    full = os.path.join(base, os.path.expanduser(name))
    node = fields.value_node("csv")

    def fail(message: str) -> tuple[None, str]:
        fields.reader.error(fields.at("csv"), node, f"{name}: {message}")
        return None, full

    try:
        with open(full, "rb") as file:
            content = file.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        return fail(exc.strerror or str(exc))
    if len(content) > MAX_CSV_BYTES:
        return fail(f"larger than {MAX_CSV_BYTES // 2**20} MiB")
    try:
        decoded = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return fail(f"not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        reader = csv.DictReader(io.StringIO(decoded, newline=""), strict=True)
        columns = reader.fieldnames or []
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:  # a dict keeps the last: the first column would vanish without a word
            return fail(f"column {', '.join(map(repr, twice))} appears twice in the header row")
        rows: list[dict[str, Any]] = []
        for line in reader:
            if None in line or any(v is None for v in line.values()):
                return fail(f"line {reader.line_num} does not have one value per column")
            rows.append(dict(line))
            if len(rows) > MAX_ROWS:
                return fail(f"more than {MAX_ROWS} rows")
    except csv.Error as exc:
        return fail(f"invalid CSV: {exc}")
    if not rows:
        return fail("no rows (a header row naming the values, then one row per user)")
    if not _check_names(fields, "csv", rows):
        return None, full
    return tuple(rows), full
