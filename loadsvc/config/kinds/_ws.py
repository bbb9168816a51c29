"""What the WebSocket user kinds share, declared once: the connection options.

A WS option is a field of :class:`WsUserSpec`, its key in ``WS_KEYS`` and one
line in :func:`read_ws_options`; every WS kind then has it. Message fields live
in :class:`WsMessageSpec` and ``_MESSAGE_KEYS``, backoff in :class:`WsBackoffSpec`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from loadsvc.config._nodes import Fields
from loadsvc.config._values import (
    choice,
    duration,
    integer,
    list_of,
    nullable,
    number,
    size,
    text,
    url_path,
)
from loadsvc.config.durations import format_duration
from loadsvc.config.kinds._base import EndpointRef, EndpointUse, endpoint_label, nullable_subset

__all__ = [
    "WS_KEYS",
    "WsBackoffSpec",
    "WsMessageSpec",
    "WsUserSpec",
    "read_ws_options",
    "read_ws_user",
]


@dataclass(frozen=True)
class WsMessageSpec:
    """How a WS user reads and validates the frames of a stream."""

    required_keys: tuple[str, ...] = ()
    # Required keys a backend may send as null on purpose (others: null is missing).
    nullable_keys: tuple[str, ...] = ()
    type_field: str = "type"
    # Frames of these types are counted (outcome "status") but neither validated nor timed.
    skip_types: tuple[str, ...] = ("status",)
    timestamp_field: str | None = "published_at"
    timestamp_unit: Literal["s", "ms"] = "s"
    sequence_field: str | None = "seq"
    # A publish stamp later than the arrival by up to this much is timed as 0 (clocks kept
    # in step by NTP differ by a few ms); beyond it the frame is "skewed" and not timed.
    clock_tolerance_s: float = 0.01


@dataclass(frozen=True)
class WsBackoffSpec:
    """Jittered exponential backoff between reconnect attempts after a failure."""

    initial_s: float = 0.1
    max_s: float = 5.0
    multiplier: float = 2.0


@dataclass(frozen=True)
class WsUserSpec:
    """The connection options every WS user kind has (each kind adds its own after them)."""

    path: str
    endpoint: str
    message: WsMessageSpec = WsMessageSpec()
    weight: int = 1
    connect_timeout_s: float = 10.0
    backoff: WsBackoffSpec = WsBackoffSpec()
    # The largest message taken; a bigger one fails the connection (close code 1009).
    max_message: int = 1024 * 1024

    def endpoints(self) -> tuple[EndpointRef, ...]:
        """The one endpoint a WS group measures."""
        sequenced = self.message.sequence_field is not None
        return (EndpointRef(self.endpoint, "ws", sequenced=sequenced),)


# The keys of a WS user group before its kind's own, in the order messages list them.
WS_KEYS = ("kind", "weight", "path", "name", "message", "connect_timeout", "backoff", "max_message")
_MESSAGE_KEYS = (
    "required_keys",
    "nullable_keys",
    "type_field",
    "skip_types",
    "timestamp_field",
    "timestamp_unit",
    "sequence_field",
    "clock_tolerance",
)
_BACKOFF_KEYS = ("initial", "max", "multiplier")

_names = list_of(text())

W = TypeVar("W", bound=WsUserSpec)


def read_ws_options(fields: Fields, uses: list[EndpointUse]) -> WsUserSpec | None:
    """The shared connection options of a WS group; None without a usable ``path``."""
    ws_path = fields.get("path", url_path(), required=True)
    name = fields.get("name", text())
    message = _message(fields)
    backoff = _backoff(fields)
    weight = fields.get("weight", integer(1), WsUserSpec.weight)
    timeout = fields.get("connect_timeout", duration(), WsUserSpec.connect_timeout_s)
    max_message = fields.get("max_message", size(), WsUserSpec.max_message)
    if ws_path is None:
        return None
    endpoint = name if name is not None else endpoint_label(ws_path)
    uses.append(EndpointUse(endpoint, "ws", fields.path, fields.value_node("path") or fields.node))
    return WsUserSpec(ws_path, endpoint, message, weight, timeout, backoff, max_message)


def read_ws_user(spec_type: type[W], options: WsUserSpec | None, **own: Any) -> W | None:
    """A WS kind's spec: the shared ``options`` (None if broken) and the kind's ``own`` fields."""
    if options is None:
        return None
    shared = {f.name: getattr(options, f.name) for f in dataclasses.fields(WsUserSpec)}
    return spec_type(**shared, **own)


def _message(parent: Fields) -> WsMessageSpec:
    fields = parent.section("message", _MESSAGE_KEYS)
    if fields is None:
        return WsMessageSpec()
    unit: str = fields.get("timestamp_unit", choice(("s", "ms")), "s")
    required = fields.get("required_keys", _names, WsMessageSpec.required_keys)
    return WsMessageSpec(
        required_keys=required,
        nullable_keys=nullable_subset(fields, required),
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
    fields = parent.section("backoff", _BACKOFF_KEYS)
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
