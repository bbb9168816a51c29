"""The ``rest`` user kind: weighted HTTP tasks, paced or with think time.

Its spec, how a config file describes it, and the endpoints it measures; its users
(:class:`loadsvc.users.rest.RestUser`) are built by :data:`loadsvc.users.kinds.BUILDERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import yaml

from loadsvc.config._nodes import Fields, Reader
from loadsvc.config._values import (
    choice,
    duration,
    integer,
    join,
    list_of,
    one_or_list,
    size,
    text,
)
from loadsvc.config.durations import format_duration
from loadsvc.config.kinds._base import (
    EndpointRef,
    EndpointUse,
    UserKind,
    endpoint_label,
    nullable_subset,
)
from loadsvc.config.kinds._request import REQUEST_KEYS, RequestTemplates, read_request

__all__ = ["HTTP_METHODS", "KIND", "HttpTaskSpec", "RateLimitSpec", "RestUserSpec"]

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


@dataclass(frozen=True)
class HttpTaskSpec:
    """One weighted REST request a REST user makes.

    ``path`` may carry a query string (``/api/market/alerts?limit=50``);
    ``endpoint`` is the metric label: the route without the query string.
    ``request`` holds what each user fills in before its first send (path, query,
    headers, JSON body; see :mod:`loadsvc.config.kinds._request`); None: ``path`` as is.
    """

    path: str
    endpoint: str
    method: str = "GET"
    weight: int = 1
    expect_status: tuple[int, ...] = (200,)
    required_keys: tuple[str, ...] = ()
    # Required keys the backend may send as null on purpose (others: null is missing).
    nullable_keys: tuple[str, ...] = ()
    request: RequestTemplates | None = None


@dataclass(frozen=True)
class RateLimitSpec:
    """How a REST user honours ``429 Too Many Requests`` from an endpoint.

    It sends nothing more to that endpoint for ``Retry-After`` (seconds or an HTTP date,
    never more than ``max_wait_s``, plus a little jitter so a crowd does not return at
    once); without ``Retry-After`` it backs off from ``backoff_s``, doubling on each
    429 in a row up to ``max_wait_s``.
    """

    max_wait_s: float = 60.0
    backoff_s: float = 1.0


@dataclass(frozen=True)
class RestUserSpec:
    """A REST user: weighted tasks, paced (open, coordinated-omission-safe) or with think time.

    Exactly one of ``pacing_s`` (one request every ``pacing_s``, latency from the
    intended start) and ``think_time_s`` (closed model: wait uniform(min, max)
    after each response, latency from the send) is set.

    ``max_body`` caps a response body as sent and ``max_decompressed`` once
    decoded (bytes); past either the request counts as ``too_large``.
    """

    tasks: tuple[HttpTaskSpec, ...]
    pacing_s: float | None = None
    think_time_s: tuple[float, float] | None = None
    weight: int = 1
    timeout_s: float = 10.0
    max_body: int = 10 * 1024 * 1024
    max_decompressed: int = 50 * 1024 * 1024
    rate_limit: RateLimitSpec = RateLimitSpec()
    kind: Literal["rest"] = "rest"

    def endpoints(self) -> tuple[EndpointRef, ...]:
        """The endpoint of each task, in order (repeats included: one sink per task)."""
        return tuple(EndpointRef(t.endpoint, "http", t.method) for t in self.tasks)


_KEYS = (
    "kind", "weight", "pacing", "think_time", "timeout", "max_body", "max_decompressed",
    "rate_limit", "tasks",
)  # fmt: skip
_TASK_KEYS = (
    *REQUEST_KEYS, "name", "method", "weight", "expect_status", "required_keys", "nullable_keys",
)  # fmt: skip
_RATE_LIMIT_KEYS = ("max_wait", "backoff")

_names = list_of(text())
_status = integer(100, 599)


def read(fields: Fields, uses: list[EndpointUse]) -> RestUserSpec | None:
    """A rest user group from its config keys; every problem is reported to the reader."""
    reader = fields.reader
    pacing = fields.get("pacing", duration())
    think_time = _think_time(fields)
    if "pacing" in fields and "think_time" in fields:
        reader.error(
            fields.path,
            fields.key_node("think_time"),
            "set either 'pacing' (a request every interval) or 'think_time' "
            "(a pause after each response), not both",
        )
    elif "pacing" not in fields and "think_time" not in fields:
        reader.error(
            fields.path,
            fields.node,
            "a rest user needs 'pacing' (a request every interval) or 'think_time' "
            "(a pause after each response)",
        )
    tasks: list[HttpTaskSpec] = []
    tasks_node = fields.require("tasks")
    if tasks_node is not None:
        tasks_path = fields.at("tasks")
        if not isinstance(tasks_node, yaml.SequenceNode) or not tasks_node.value:
            reader.error(tasks_path, tasks_node, "expected a non-empty list of tasks")
        else:
            for index, task_node in enumerate(tasks_node.value):
                task = _task(reader, task_node, join(tasks_path, index), uses)
                if task is not None:
                    tasks.append(task)
    return RestUserSpec(
        tasks=tuple(tasks),
        pacing_s=pacing,
        think_time_s=think_time,
        weight=fields.get("weight", integer(1), RestUserSpec.weight),
        timeout_s=fields.get("timeout", duration(), RestUserSpec.timeout_s),
        max_body=fields.get("max_body", size(), RestUserSpec.max_body),
        max_decompressed=fields.get("max_decompressed", size(), RestUserSpec.max_decompressed),
        rate_limit=_rate_limit(fields),
    )


def _rate_limit(parent: Fields) -> RateLimitSpec:
    fields = parent.section("rate_limit", _RATE_LIMIT_KEYS)
    if fields is None:
        return RateLimitSpec()
    spec = RateLimitSpec(
        max_wait_s=fields.get("max_wait", duration(), RateLimitSpec.max_wait_s),
        backoff_s=fields.get("backoff", duration(), RateLimitSpec.backoff_s),
    )
    if spec.backoff_s > spec.max_wait_s:
        parent.reader.error(
            fields.at("backoff"),
            fields.value_node("backoff") or fields.node,
            f"backoff ({format_duration(spec.backoff_s)}) must not be more than max_wait "
            f"({format_duration(spec.max_wait_s)})",
        )
    return spec


def _think_time(parent: Fields) -> tuple[float, float] | None:
    node = parent.value_node("think_time")
    if node is None:
        return None
    fields = parent.reader.mapping(node, parent.at("think_time"), ("min", "max"))
    if fields is None:
        return None
    low = fields.get("min", duration(allow_zero=True), required=True)
    high = fields.get("max", duration(allow_zero=True), required=True)
    if low is None or high is None:
        return None
    if low > high:
        parent.reader.error(
            fields.path,
            node,
            f"min ({format_duration(low)}) must not be more than max ({format_duration(high)})",
        )
    return (low, high)


def _task(
    reader: Reader, node: yaml.Node, path: str, uses: list[EndpointUse]
) -> HttpTaskSpec | None:
    fields = reader.mapping(node, path, _TASK_KEYS, context="for a task")
    if fields is None:
        return None
    name = fields.get("name", text())
    # None when given but invalid (reported): it says nothing about whether a body belongs.
    method = fields.get("method", choice(HTTP_METHODS, fold=str.upper), None)
    if "method" not in fields:
        method = HttpTaskSpec.method
    request = read_request(fields, method)
    weight = fields.get("weight", integer(1), HttpTaskSpec.weight)
    expect_status = fields.get("expect_status", one_or_list(_status), HttpTaskSpec.expect_status)
    required_keys = fields.get("required_keys", _names, HttpTaskSpec.required_keys)
    nullable_keys = nullable_subset(fields, required_keys)
    if request is None:
        return None
    request_path = str(request.path.source)
    endpoint = name if name is not None else endpoint_label(request_path)
    uses.append(EndpointUse(endpoint, "http", path, fields.value_node("path") or node))
    return HttpTaskSpec(
        path=request_path,
        endpoint=endpoint,
        method=method or HttpTaskSpec.method,
        weight=weight,
        expect_status=expect_status,
        required_keys=required_keys,
        nullable_keys=nullable_keys,
        # A fixed path alone needs nothing filled per user: None, as a spec made in code has.
        request=None if request == RequestTemplates(request.path) and request.path.constant
        else request,
    )  # fmt: skip


KIND = UserKind[RestUserSpec](keys=_KEYS, read=read)
