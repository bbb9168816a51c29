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
    join,
    list_of,
    nullable,
    number,
    size,
    text,
    url_path,
)
from loadsvc.config.durations import format_duration
from loadsvc.config.kinds._base import EndpointRef, EndpointUse, endpoint_label, nullable_subset
from loadsvc.config.kinds._conversation import WsConversationSpec, field_path, read_conversation

__all__ = [
    "WS_KEYS",
    "WsBackoffSpec",
    "WsMessageSpec",
    "WsUserSpec",
    "read_ws_options",
    "read_ws_user",
]


TimestampUnit = Literal["s", "ms", "us", "ns", "rfc3339"]
TIMESTAMP_UNITS: tuple[TimestampUnit, ...] = ("s", "ms", "us", "ns", "rfc3339")


@dataclass(frozen=True)
class WsMessageSpec:
    """How a WS user reads and validates the frames of a stream.

    Fields are addressed by path (``meta.ts``, ``d.seq``: a dot goes one object deeper).
    """

    required_keys: tuple[str, ...] = ()
    # Required keys a backend may send as null on purpose (others: null is missing).
    nullable_keys: tuple[str, ...] = ()
    type_field: str = "type"
    # Frames of these types are counted (outcome "status") but neither validated nor timed.
    skip_types: tuple[str, ...] = ("status",)
    timestamp_field: str | None = "published_at"
    timestamp_unit: TimestampUnit = "s"
    sequence_field: str | None = "seq"
    # One sequence per value of this field (a symbol), at most max_sequence_keys per connection.
    sequence_key: str | None = None
    max_sequence_keys: int = 1000
    # How binary frames are read; text frames are always JSON.
    binary: Literal["json", "msgpack"] = "json"
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
    # What the client says on each connection (None: it only listens).
    conversation: WsConversationSpec | None = None

    def endpoints(self) -> tuple[EndpointRef, ...]:
        """The one endpoint a WS group measures."""
        sequenced = self.message.sequence_field is not None
        return (EndpointRef(self.endpoint, "ws", sequenced=sequenced),)


# The keys of a WS user group before its kind's own, in the order messages list them.
WS_KEYS = (
    "kind", "weight", "path", "name", "message", "connect_timeout", "backoff", "max_message",
    "conversation",
)  # fmt: skip
_MESSAGE_KEYS = (
    "required_keys",
    "nullable_keys",
    "type_field",
    "skip_types",
    "timestamp_field",
    "timestamp_unit",
    "sequence_field",
    "sequence_key",
    "max_sequence_keys",
    "binary",
    "clock_tolerance",
)
# One connection tracks at most this many sequence keys, whatever the configuration says.
MAX_SEQUENCE_KEYS = 1_000_000
_BACKOFF_KEYS = ("initial", "max", "multiplier")

_names = list_of(text())
_paths = list_of(field_path)

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
    conversation = read_conversation(fields)
    _check_paths(fields, message, conversation)
    if ws_path is None:
        return None
    endpoint = name if name is not None else endpoint_label(ws_path)
    uses.append(EndpointUse(endpoint, "ws", fields.path, fields.value_node("path") or fields.node))
    return WsUserSpec(
        ws_path, endpoint, message, weight, timeout, backoff, max_message, conversation
    )


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
    unit = fields.get("timestamp_unit", choice(TIMESTAMP_UNITS), "s")
    binary = fields.get("binary", choice(("json", "msgpack")), "json")
    required = fields.get("required_keys", _paths, WsMessageSpec.required_keys)
    sequence_field = fields.get(
        "sequence_field", nullable(field_path), WsMessageSpec.sequence_field
    )
    sequence_key = fields.get("sequence_key", nullable(field_path), None)
    if sequence_key is not None and sequence_field is None and "sequence_field" in fields:
        fields.reader.error(
            fields.at("sequence_key"),
            fields.value_node("sequence_key"),
            "a sequence_key scopes the sequence_field, which is null here",
        )
    return WsMessageSpec(
        required_keys=required,
        nullable_keys=nullable_subset(fields, required),
        type_field=fields.get("type_field", field_path, WsMessageSpec.type_field),
        skip_types=fields.get("skip_types", _names, WsMessageSpec.skip_types),
        timestamp_field=fields.get(
            "timestamp_field", nullable(field_path), WsMessageSpec.timestamp_field
        ),
        timestamp_unit=next(u for u in TIMESTAMP_UNITS if u == unit),
        sequence_field=sequence_field,
        sequence_key=sequence_key,
        max_sequence_keys=fields.get(
            "max_sequence_keys", integer(1, MAX_SEQUENCE_KEYS), WsMessageSpec.max_sequence_keys
        ),
        binary="msgpack" if binary == "msgpack" else "json",
        clock_tolerance_s=fields.get(
            "clock_tolerance", duration(allow_zero=True), WsMessageSpec.clock_tolerance_s
        ),
    )


def _check_paths(
    fields: Fields, message: WsMessageSpec, conversation: WsConversationSpec | None
) -> None:
    """Each field is read as one thing: the type, the stamp, the sequence number and its
    key are distinct paths, and only a required key may be an object holding other fields."""
    typed = [
        (("message", "timestamp_field"), message.timestamp_field),
        (("message", "sequence_field"), message.sequence_field),
        (("message", "sequence_key"), message.sequence_key),
        (("message", "type_field"), message.type_field),
    ]
    valued = list(typed)
    if conversation is not None:
        if conversation.ack is not None:
            valued += [(("conversation", "ack"), p) for p in conversation.ack.match.paths]
        if conversation.heartbeat is not None:
            beat = conversation.heartbeat
            valued += [(("conversation", "heartbeat"), p) for p in beat.match.paths]
            valued += [(("conversation", "heartbeat"), p) for p in beat.reply_paths]
    every = [p for _, p in valued if p is not None] + list(message.required_keys)

    def report(where: tuple[str, str], problem: str) -> None:
        section, key = where
        node = fields.value_node(section) or fields.node
        fields.reader.error(join(fields.at(section), key), node, problem)

    seen: dict[str, str] = {}
    for where, path in typed:
        if path is None:
            continue
        if path in seen:
            report(where, f"{path!r} is already the {seen[path]}")
        seen[path] = where[1]
    for where, path in valued:
        inner = sorted({p for p in every if path is not None and p.startswith(f"{path}.")})
        if inner:
            report(
                where, f"{path!r} holds other fields ({', '.join(inner)}): it is read as a value"
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
