"""WS conversation and frame-path settings: read into specs, every mistake named by field."""

from __future__ import annotations

import pytest

from loadsvc.config import ConfigError, parse_config
from loadsvc.config.spec import WsMatch, WsStreamUserSpec


def group(body: str, data: str = "") -> str:
    lines = "".join(f"        {line}\n" for line in body.strip().splitlines())
    return (
        "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 2, duration: 1s}\n"
        + (f"    data: {data}\n" if data else "")
        + "    users:\n      - kind: ws_stream\n        path: /ws\n"
        + lines
    )


def issues(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    assert "c.yaml" in str(caught.value)
    return {i.path: i.message for i in caught.value.issues}


def test_a_full_conversation_is_read() -> None:
    """Every key lands in the spec: paths, units, key limit, binary, messages, ack, heartbeat."""
    spec = parse_config(
        group(
            """
message:
  timestamp_field: meta.ts
  timestamp_unit: ns
  sequence_field: d.seq
  sequence_key: d.sym
  max_sequence_keys: 50
  binary: msgpack
  required_keys: [d]
conversation:
  encoding: msgpack
  send: [{op: subscribe, symbols: "${symbols}"}, "hello ${user}"]
  ack: {match: {op: ack, ok: true}, timeout: 2s}
  heartbeat: {match: {op: ping}, reply: {op: pong, id: "${frame.d.id}"}}
  periodic: [{every: 15s, send: {op: keepalive}}]
""",
            data="{rows: [{symbols: [VCB]}]}",
        ),
        "c.yaml",
    ).scenario("s")
    (user,) = spec.users
    assert isinstance(user, WsStreamUserSpec)
    m = user.message
    assert (m.timestamp_field, m.timestamp_unit, m.sequence_key) == ("meta.ts", "ns", "d.sym")
    assert (m.max_sequence_keys, m.binary) == (50, "msgpack")
    talk = user.conversation
    assert talk is not None and talk.encoding == "msgpack"
    assert [t.fill({"symbols": ["A"], "user": 3}) for t in talk.send] == [
        {"op": "subscribe", "symbols": ["A"]},
        "hello 3",
    ]
    assert talk.ack is not None and talk.ack.match == WsMatch((("op", "ack"), ("ok", True)))
    assert talk.ack.timeout_s == 2.0
    assert talk.heartbeat is not None and talk.heartbeat.reply_paths == ("d.id",)
    assert talk.periodic[0].every_s == 15.0


def test_a_spec_with_templates_has_a_stable_repr() -> None:
    """The scenario fingerprint is the specs' repr: a template's name set must not be in it
    (its order changes with the process)."""
    text = group('conversation: {send: [{a: "${user}", b: "${scenario}"}]}')
    assert "frozenset" not in repr(parse_config(text, "c.yaml").scenario("s").users)


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ("message: {timestamp_unit: minutes}", "message.timestamp_unit", "expected one of s, ms"),
        ("message: {binary: cbor}", "message.binary", "expected one of json, msgpack"),
        ("message: {sequence_key: d..sym}", "message.sequence_key", "expected a field path"),
        ("message: {max_sequence_keys: 0}", "message.max_sequence_keys", "between 1 and 1000000"),
        ("message: {sequence_field: null, sequence_key: sym}", "message.sequence_key", "null"),
        ("message: {sequence_field: d, timestamp_field: d.ts}", "message.sequence_field",
         "'d' holds other fields (d.ts)"),
        ("message: {sequence_key: seq}", "message.sequence_key", "'seq' is already the"),
        ("conversation: {encoding: xml}", "conversation.encoding", "expected one of json"),
        ("conversation: {send: {op: x}}", "conversation.send", "non-empty list of messages"),
        ("conversation: {send: [5]}", "conversation.send[0]", "a mapping, a list or a string"),
        ("conversation: {send: ['${nope}']}", "conversation.send[0]", "unknown value 'nope'"),
        ("conversation: {ack: {timeout: 1s}}", "conversation.ack.match", "required key"),
        ("conversation: {ack: {match: {op: [a]}}}", "conversation.ack.match.op", "string, number"),
        ("conversation: {ack: {match: {op: ack}, timeout: 0s}}", "conversation.ack.timeout",
         "longer than 0"),
        ("conversation: {heartbeat: {match: {op: ping}, reply: '${frame}'}}",
         "conversation.heartbeat.reply", "names no field"),
        ("conversation: {heartbeat: {match: {op: ping}, reply: {id: '${ping.id}'}}}",
         "conversation.heartbeat.reply", "unknown value 'ping.id'"),
        ("conversation: {periodic: [{send: x}]}", "conversation.periodic[0].every", "required"),
        ("conversation: {periodic: [{every: 1s}]}", "conversation.periodic[0].send", "required"),
        ("conversation: {chat: yes}", "conversation.chat", "unknown key 'chat'"),
    ],
)  # fmt: skip
def test_each_mistake_is_named_by_its_field(body: str, path: str, message: str) -> None:
    """A bad conversation or message setting is an error at its own path, in the file."""
    found = issues(group(body))
    key = f"scenarios.s.users[0].{path}"
    assert key in found, found
    assert message in found[key]
