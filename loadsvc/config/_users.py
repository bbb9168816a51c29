"""Reading a scenario's user groups: REST users and their tasks, WS stream and reconnect users."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import yaml

from loadsvc.config._nodes import Fields, Reader
from loadsvc.config._values import (
    Converter,
    Invalid,
    choice,
    describe,
    duration,
    integer,
    join,
    list_of,
    nullable,
    number,
    one_or_list,
    scalar,
    text,
    url_path,
)
from loadsvc.config.durations import format_duration
from loadsvc.config.spec import (
    HttpTaskSpec,
    RestUserSpec,
    UserSpec,
    WsBackoffSpec,
    WsMessageSpec,
    WsReconnectUserSpec,
    WsStreamUserSpec,
    endpoint_label,
)

__all__ = ["EndpointUse", "read_users"]

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")

_WS_KEYS = ("kind", "weight", "path", "name", "message", "connect_timeout", "backoff")
_REST_KEYS = (
    "kind", "weight", "pacing", "think_time", "timeout", "max_body", "max_decompressed", "tasks",
)  # fmt: skip
_USER_KEYS: dict[str, tuple[str, ...]] = {
    "rest": _REST_KEYS,
    "ws_stream": _WS_KEYS,
    "ws_reconnect": (*_WS_KEYS, "cycle", "messages_per_cycle"),
}
_TASK_KEYS = ("path", "name", "method", "weight", "expect_status", "required_keys")
_MESSAGE_KEYS = (
    "required_keys",
    "type_field",
    "skip_types",
    "timestamp_field",
    "timestamp_unit",
    "sequence_field",
    "clock_tolerance",
)
_BACKOFF_KEYS = ("initial", "max", "multiplier")

_names = list_of(text())
_status = integer(100, 599)

_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB)?")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_MIN_SIZE = 1024
_MAX_SIZE = 1024**3  # a cap past memory would protect nothing


def _size() -> Converter[int]:
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


@dataclass(frozen=True)
class EndpointUse:
    """Where a user group or task measures an endpoint (to find HTTP/WS label clashes)."""

    endpoint: str
    protocol: Literal["http", "ws"]
    path: str
    node: yaml.Node


def read_users(
    reader: Reader, node: yaml.Node, path: str
) -> tuple[tuple[UserSpec, ...], tuple[EndpointUse, ...]]:
    """Read a scenario's ``users`` list: the user specs and every endpoint they use."""
    if not isinstance(node, yaml.SequenceNode):
        reader.error(path, node, "expected a list of user groups")
        return (), ()
    if not node.value:
        reader.error(path, node, "at least one user group is required")
    users: list[UserSpec] = []
    uses: list[EndpointUse] = []
    for index, user_node in enumerate(node.value):
        user_path = join(path, index)
        kind = reader.kind(user_node, user_path, tuple(_USER_KEYS))
        if kind is None:
            continue
        fields = reader.mapping(
            user_node, user_path, _USER_KEYS[kind], context=f"for user kind {kind!r}"
        )
        if fields is None:  # pragma: no cover - reader.kind checked it is a mapping
            continue
        user = _READERS[kind](fields, uses)
        if user is not None:
            users.append(user)
    return tuple(users), tuple(uses)


def _rest_user(fields: Fields, uses: list[EndpointUse]) -> RestUserSpec | None:
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
        max_body=fields.get("max_body", _size(), RestUserSpec.max_body),
        max_decompressed=fields.get("max_decompressed", _size(), RestUserSpec.max_decompressed),
    )


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
    request_path = fields.get("path", url_path(), required=True)
    name = fields.get("name", text())
    method = fields.get("method", choice(HTTP_METHODS, fold=str.upper), HttpTaskSpec.method)
    weight = fields.get("weight", integer(1), HttpTaskSpec.weight)
    expect_status = fields.get("expect_status", one_or_list(_status), HttpTaskSpec.expect_status)
    required_keys = fields.get("required_keys", _names, HttpTaskSpec.required_keys)
    if request_path is None:
        return None
    endpoint = name if name is not None else endpoint_label(request_path)
    uses.append(EndpointUse(endpoint, "http", path, fields.value_node("path") or node))
    return HttpTaskSpec(
        path=request_path,
        endpoint=endpoint,
        method=method,
        weight=weight,
        expect_status=expect_status,
        required_keys=required_keys,
    )


def _ws_common(fields: Fields, uses: list[EndpointUse]) -> _WsCommon | None:
    ws_path = fields.get("path", url_path(), required=True)
    name = fields.get("name", text())
    message = _message(fields)
    backoff = _backoff(fields)
    weight = fields.get("weight", integer(1), WsStreamUserSpec.weight)
    timeout = fields.get("connect_timeout", duration(), WsStreamUserSpec.connect_timeout_s)
    if ws_path is None:
        return None
    endpoint = name if name is not None else endpoint_label(ws_path)
    uses.append(EndpointUse(endpoint, "ws", fields.path, fields.value_node("path") or fields.node))
    return _WsCommon(ws_path, endpoint, message, weight, timeout, backoff)


@dataclass(frozen=True)
class _WsCommon:
    path: str
    endpoint: str
    message: WsMessageSpec
    weight: int
    connect_timeout_s: float
    backoff: WsBackoffSpec


def _ws_stream_user(fields: Fields, uses: list[EndpointUse]) -> WsStreamUserSpec | None:
    common = _ws_common(fields, uses)
    if common is None:
        return None
    return WsStreamUserSpec(
        path=common.path,
        endpoint=common.endpoint,
        message=common.message,
        weight=common.weight,
        connect_timeout_s=common.connect_timeout_s,
        backoff=common.backoff,
    )


def _ws_reconnect_user(fields: Fields, uses: list[EndpointUse]) -> WsReconnectUserSpec | None:
    common = _ws_common(fields, uses)
    cycle = fields.get("cycle", duration(), WsReconnectUserSpec.cycle_s)
    per_cycle = fields.get("messages_per_cycle", integer(1), WsReconnectUserSpec.messages_per_cycle)
    if common is None:
        return None
    return WsReconnectUserSpec(
        path=common.path,
        endpoint=common.endpoint,
        cycle_s=cycle,
        messages_per_cycle=per_cycle,
        message=common.message,
        weight=common.weight,
        connect_timeout_s=common.connect_timeout_s,
        backoff=common.backoff,
    )


def _message(parent: Fields) -> WsMessageSpec:
    node = parent.value_node("message")
    fields = (
        None
        if node is None
        else parent.reader.mapping(node, parent.at("message"), _MESSAGE_KEYS, null_is_empty=True)
    )
    if fields is None:
        return WsMessageSpec()
    unit: str = fields.get("timestamp_unit", choice(("s", "ms")), "s")
    return WsMessageSpec(
        required_keys=fields.get("required_keys", _names, WsMessageSpec.required_keys),
        type_field=fields.get("type_field", text(), WsMessageSpec.type_field),
        skip_types=fields.get("skip_types", _names, WsMessageSpec.skip_types),
        timestamp_field=fields.get(
            "timestamp_field", nullable(text()), WsMessageSpec.timestamp_field
        ),
        timestamp_unit="ms" if unit == "ms" else "s",
        sequence_field=fields.get("sequence_field", nullable(text()), WsMessageSpec.sequence_field),
        clock_tolerance_s=fields.get(
            "clock_tolerance", duration(allow_zero=True), WsMessageSpec.clock_tolerance_s
        ),
    )


def _backoff(parent: Fields) -> WsBackoffSpec:
    node = parent.value_node("backoff")
    fields = (
        None
        if node is None
        else parent.reader.mapping(node, parent.at("backoff"), _BACKOFF_KEYS, null_is_empty=True)
    )
    if fields is None:
        return WsBackoffSpec()
    # None when given but invalid: then the two are not compared.
    initial = fields.get(
        "initial", duration(), None if "initial" in fields else WsBackoffSpec.initial_s
    )
    longest = fields.get("max", duration(), None if "max" in fields else WsBackoffSpec.max_s)
    if initial is not None and longest is not None and initial > longest:
        parent.reader.error(
            fields.path,
            fields.node,
            f"initial ({format_duration(initial)}) must not be more than "
            f"max ({format_duration(longest)})",
        )
    return WsBackoffSpec(
        initial_s=WsBackoffSpec.initial_s if initial is None else initial,
        max_s=WsBackoffSpec.max_s if longest is None else longest,
        multiplier=fields.get("multiplier", number(1.0), WsBackoffSpec.multiplier),
    )


_READERS: dict[str, Callable[[Fields, list[EndpointUse]], UserSpec | None]] = {
    "rest": _rest_user,
    "ws_stream": _ws_stream_user,
    "ws_reconnect": _ws_reconnect_user,
}
