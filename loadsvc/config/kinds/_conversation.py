"""A WS user's side of the conversation: what it sends, the acknowledgement it waits for,
the heartbeats it answers and what it sends periodically.

::

    conversation:
      encoding: json                 # mappings and lists sent as JSON text, or msgpack binary
      send:                          # after connecting, in order (strings are sent as is)
        - {op: subscribe, symbols: "${symbols}", id: "${user}"}
      ack: {match: {op: ack}, timeout: 5s}
      heartbeat:
        match: {op: ping}
        reply: {op: pong, id: "${frame.id}"}   # ${frame.<path>}: a field of the ping
      periodic:
        - {every: 15s, send: {op: keepalive}}

Messages are templates (:mod:`loadsvc.templating`) filled with each user's values; a
reply may also copy fields of the frame it answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import yaml

from loadsvc.config._nodes import Fields, Reader
from loadsvc.config._templates import read_template_at
from loadsvc.config._values import Invalid, choice, describe, duration, join, scalar, text
from loadsvc.templating import Template

__all__ = [
    "CONVERSATION_KEYS",
    "FRAME",
    "WsAckSpec",
    "WsConversationSpec",
    "WsHeartbeatSpec",
    "WsMatch",
    "WsPeriodicSpec",
    "field_path",
    "read_conversation",
]

CONVERSATION_KEYS = ("encoding", "send", "ack", "heartbeat", "periodic")
_ACK_KEYS = ("match", "timeout")
_HEARTBEAT_KEYS = ("match", "reply")
_PERIODIC_KEYS = ("every", "send")
# ``${frame.<path>}`` in a heartbeat's reply: a field of the frame it answers.
FRAME = "frame"


@dataclass(frozen=True)
class WsMatch:
    """Frames whose fields (by path) have these values (strings, numbers, booleans, null)."""

    fields: tuple[tuple[str, str | int | float | bool | None], ...]

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths the match reads."""
        return tuple(path for path, _ in self.fields)


@dataclass(frozen=True)
class WsAckSpec:
    """The acknowledgement awaited after the opening messages, before frames are data."""

    match: WsMatch
    timeout_s: float = 10.0


@dataclass(frozen=True)
class WsHeartbeatSpec:
    """Application heartbeats: counted as status frames and answered with ``reply``."""

    match: WsMatch
    reply: Template | None = None

    @property
    def reply_paths(self) -> tuple[str, ...]:
        """The fields of the heartbeat its reply copies (``${frame.id}`` -> ``id``)."""
        if self.reply is None:
            return ()
        prefix = f"{FRAME}."
        return tuple(sorted(n[len(prefix) :] for n in self.reply.names if n.startswith(prefix)))


@dataclass(frozen=True)
class WsPeriodicSpec:
    """A message sent every ``every_s`` while a connection is open (an app keep-alive)."""

    every_s: float
    message: Template


@dataclass(frozen=True)
class WsConversationSpec:
    """What a WS user says on each connection (see the module docstring)."""

    send: tuple[Template, ...] = ()
    ack: WsAckSpec | None = None
    heartbeat: WsHeartbeatSpec | None = None
    periodic: tuple[WsPeriodicSpec, ...] = ()
    encoding: Literal["json", "msgpack"] = "json"


def path_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a field path such as ``d.seq`` (None: nothing)."""
    if any(not part.strip() for part in value.split(".")):
        return f"expected a field path such as 'meta.ts' (names joined by dots), got {value!r}"
    return None


def field_path(node: yaml.Node) -> str:
    """A field path such as ``d.seq``: names joined by dots, none empty."""
    value = text()(node)
    problem = path_problem(value)
    if problem is not None:
        raise Invalid(problem)
    return value


def read_conversation(parent: Fields) -> WsConversationSpec | None:
    """The ``conversation`` section of a WS group; None when absent (or broken, reported)."""
    fields = parent.section("conversation", CONVERSATION_KEYS)
    if fields is None:
        return None
    encoding = fields.get("encoding", choice(("json", "msgpack")), "json")
    return WsConversationSpec(
        send=_messages(fields, "send"),
        ack=_ack(fields),
        heartbeat=_heartbeat(fields),
        periodic=_periodic(fields),
        encoding="msgpack" if encoding == "msgpack" else "json",
    )


def _messages(fields: Fields, key: str) -> tuple[Template, ...]:
    """A list of messages under ``key``, each a template (a mapping, a list or a string)."""
    node = fields.value_node(key)
    if node is None:
        return ()
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        fields.reader.error(
            fields.at(key), node, f"expected a non-empty list of messages, got {describe(node)}"
        )
        return ()
    out = []
    for i, child in enumerate(node.value):
        message = _message(fields.reader, f"{fields.at(key)}[{i}]", child)
        if message is not None:
            out.append(message)
    return tuple(out)


def _message(
    reader: Reader, path: str, node: yaml.Node, *, local: str | None = None
) -> Template | None:
    """One message template: a mapping, a list or a string."""
    if isinstance(node, yaml.ScalarNode) and not isinstance(scalar(node), str):
        reader.error(
            path, node, f"a message is a mapping, a list or a string, got {describe(node)}"
        )
        return None
    return read_template_at(reader, path, node, local=local)


def _match(fields: Fields) -> WsMatch | None:
    node = fields.require("match")
    if node is None:
        return None
    where = fields.at("match")
    if not isinstance(node, yaml.MappingNode) or not node.value:
        fields.reader.error(
            where, node, f"expected a mapping of field paths to values, got {describe(node)}"
        )
        return None
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    broken = False
    for key, (key_node, value_node) in fields.reader.entries(node, where).items():
        problem = path_problem(key)
        if problem is None and not isinstance(value_node, yaml.ScalarNode):
            problem = (
                f"a match value is a string, number, boolean or null, got {describe(value_node)}"
            )
        if problem is not None:
            fields.reader.error(join(where, key), key_node, problem)
            broken = True
            continue
        value = scalar(value_node)
        assert value is None or isinstance(value, str | int | float | bool)
        pairs.append((key, value))
    return None if broken or not pairs else WsMatch(tuple(pairs))


def _ack(parent: Fields) -> WsAckSpec | None:
    fields = parent.section("ack", _ACK_KEYS)
    if fields is None:
        return None
    match = _match(fields)
    timeout = fields.get("timeout", duration(), WsAckSpec.timeout_s)
    return None if match is None else WsAckSpec(match, timeout)


def _heartbeat(parent: Fields) -> WsHeartbeatSpec | None:
    fields = parent.section("heartbeat", _HEARTBEAT_KEYS)
    if fields is None:
        return None
    match = _match(fields)
    node = fields.value_node("reply")
    reply = None if node is None else _message(fields.reader, fields.at("reply"), node, local=FRAME)
    if reply is not None and FRAME in reply.names:
        fields.reader.error(
            fields.at("reply"), fields.value_node("reply"),
            f"'${{{FRAME}}}' alone names no field: write '${{{FRAME}.id}}' for the ping's id",
        )  # fmt: skip
        reply = None
    return None if match is None else WsHeartbeatSpec(match, reply)


def _periodic(parent: Fields) -> tuple[WsPeriodicSpec, ...]:
    node = parent.value_node("periodic")
    if node is None:
        return ()
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        parent.reader.error(
            parent.at("periodic"), node, "expected a non-empty list of {every, send}"
        )
        return ()
    out = []
    for i, child in enumerate(node.value):
        path = f"{parent.at('periodic')}[{i}]"
        fields = parent.reader.mapping(child, path, _PERIODIC_KEYS)
        if fields is None:
            continue
        every = fields.get("every", duration(), None, required=True)
        node = fields.require("send")
        message = None if node is None else _message(fields.reader, fields.at("send"), node)
        if every is not None and message is not None:
            out.append(WsPeriodicSpec(every, message))
    return tuple(out)
