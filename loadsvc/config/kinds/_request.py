"""What one HTTP request sends, as templates filled per user: path, query, headers, JSON body.

Shared by a REST task and a scenario's login. Every part may use ``${name}`` values (see
:mod:`loadsvc.templating`)::

    - method: POST
      path: /v2/orders/${account}?source=soak     # the endpoint label is the route: no query
      query: {symbols: "${symbols}", limit: 50}    # added to the path's own query string
      headers: {X-Account: "${account}"}
      body: {symbols: "${symbols}", qty: 100}      # any YAML value, sent as JSON

A body on a method that has none (GET, HEAD) is a config error, as are headers loadsvc
writes itself (Host, Content-Length, ...) and a query or headers that are not a mapping.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from loadsvc.config._nodes import Fields
from loadsvc.config._templates import read_template
from loadsvc.config._values import Invalid, describe, plain, url_path
from loadsvc.templating import Template

__all__ = ["BODILESS_METHODS", "REQUEST_KEYS", "RequestTemplates", "read_request"]

REQUEST_KEYS = ("path", "query", "headers", "body")
# A body on these is refused by many servers and proxies, and means nothing to the rest.
BODILESS_METHODS = frozenset({"GET", "HEAD"})
# RFC 9110 token: what a header name may be.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Written by the client itself: a configured one would contradict it.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "content-type"}
)


@dataclass(frozen=True)
class RequestTemplates:
    """The parts of a request that a user fills with its values before its first send.

    ``path`` may hold a query string; ``query`` (a mapping) adds parameters to it;
    ``headers`` is a mapping of header names to values; ``body`` is sent as JSON. Each is
    None (the path excepted) when the configuration does not give it.
    """

    path: Template
    query: Template | None = None
    headers: Template | None = None
    body: Template | None = None


def read_request(fields: Fields, method: str | None) -> RequestTemplates | None:
    """The request parts of ``fields`` (every problem reported); None without a usable path.

    ``method`` is the request's method, None when it is itself invalid (reported).
    """
    if fields.get("path", url_path(), required=True) is None:
        return None
    path = read_template(fields, "path")
    query = _mapping_template(fields, "query", _query_problems)
    headers = _mapping_template(fields, "headers", _header_problems)
    body = read_template(fields, "body")
    if body is not None and method in BODILESS_METHODS:
        fields.reader.error(
            fields.at("body"),
            fields.key_node("body"),
            f"a {method} request has no body: send values in 'query' (or use POST, PUT, PATCH)",
        )
    if path is None:
        return None
    return RequestTemplates(path=path, query=query, headers=headers, body=body)


def _mapping_template(
    fields: Fields, key: str, problems: Callable[[dict[str, object]], list[str]]
) -> Template | None:
    """The mapping under ``key`` as a template, if ``problems`` finds none in it (reported)."""
    node = fields.value_node(key)
    if node is None:
        return None
    if not isinstance(node, yaml.MappingNode):
        fields.reader.error(fields.at(key), node, f"expected a mapping, got {describe(node)}")
        return None
    try:
        value = plain()(node)
    except Invalid as exc:
        fields.reader.report(fields.at(key), node, exc)
        return None
    assert isinstance(value, dict)
    found = problems(value)
    for problem in found:
        fields.reader.error(fields.at(key), node, problem)
    return None if found else read_template(fields, key)


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


def _query_problems(query: dict[str, object]) -> list[str]:
    return [
        f"query parameter {name!r}: a value or a list of values (joined with commas)"
        for name, v in query.items()
        if not (_scalar(v) or (isinstance(v, list) and all(_scalar(i) for i in v)))
    ]


def _header_problems(headers: dict[str, object]) -> list[str]:
    problems = []
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            problems.append(f"header name {name!r} is not a valid HTTP token")
        elif name.lower() in _RESERVED_HEADERS:
            problems.append(f"header {name!r} is written by loadsvc itself; leave it out")
        elif not _scalar(value):
            problems.append(f"the value of header {name!r} must be a single value")
    return problems
