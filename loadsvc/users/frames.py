"""Judging and timing WS frames: one partial decode per frame.

The decoder is built from the configuration: it reads only the type, the
publish stamp, the sequence number and the *presence* of the required keys.
Their values are left as raw JSON slices (``msgspec.Raw``), so the payload of a
frame (thousands of quotes) is scanned but never turned into Python objects;
that is most of the cost of a frame, and most of what a generator can save.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
import orjson

from loadsvc.config.spec import WsMessageSpec
from loadsvc.recorder import WsSink

_ABSENT = msgspec.Raw()


@functools.cache
def frame_decoder(spec: WsMessageSpec) -> tuple[msgspec.json.Decoder[Any], tuple[str, ...]]:
    """A decoder for frames of ``spec`` and the attributes that must be present.

    Cached: the users of a group share one (a struct type and a decoder are a few KB,
    which at thousands of connections is a noticeable part of the memory per connection).
    """
    by_key: dict[str, tuple[str, Any, Any]] = {
        spec.type_field: ("kind", msgspec.Raw, _ABSENT),
    }
    if spec.timestamp_field is not None:
        by_key.setdefault(spec.timestamp_field, ("stamp", float | None, None))
    if spec.sequence_field is not None:
        by_key.setdefault(spec.sequence_field, ("seq", int | None, None))
    for i, key in enumerate(spec.required_keys):
        by_key.setdefault(key, (f"k{i}", msgspec.Raw, _ABSENT))
    fields = [
        (attr, typ, msgspec.field(default=default, name=key))
        for key, (attr, typ, default) in by_key.items()
    ]
    # gc=False: a decoded frame holds no containers, so it need not be tracked by the cyclic
    # GC; untracked, a frame's allocation does not bring the next collection nearer.
    frame_type = msgspec.defstruct("Frame", fields, kw_only=True, gc=False)
    required = tuple(by_key[k][0] for k in spec.required_keys)
    return msgspec.json.Decoder(frame_type), required


class FrameReader:
    """Judges and times the frames of one connection (its state resets per connection).

    Outcomes: ``malformed`` (not JSON), ``invalid`` (JSON, but not an object, a
    required key missing, or a stamp or sequence of the wrong type), ``status``
    (a skipped type: counted only), ``ok``. Delivery latency is the arrival
    time minus the publish stamp; the interval is between data frames.
    """

    __slots__ = (
        "_decode", "_has_seq", "_has_stamp", "_last_at", "_last_seq", "_required",
        "_scale", "_sink", "_skip",
    )  # fmt: skip

    def __init__(self, spec: WsMessageSpec, sink: WsSink) -> None:
        decoder, self._required = frame_decoder(spec)
        self._decode = decoder.decode
        self._skip = frozenset(orjson.dumps(t) for t in spec.skip_types)
        self._has_stamp = spec.timestamp_field is not None
        self._has_seq = spec.sequence_field is not None
        self._scale = 0.001 if spec.timestamp_unit == "ms" else 1.0
        self._sink = sink
        self._last_at: float | None = None
        self._last_seq: int | None = None

    def new_connection(self) -> None:
        """Forget the previous connection: gaps across a reconnect are not server drops."""
        self._last_at = None
        self._last_seq = None

    def feed(self, raw: bytes | bytearray | memoryview | str, arrived: float) -> None:
        """Judge one frame that arrived at wall time ``arrived`` and report it."""
        try:
            frame = self._decode(raw)
        except msgspec.ValidationError:
            self._sink.frame("invalid", None, None, 0)
            return
        except msgspec.DecodeError:
            self._sink.frame("malformed", None, None, 0)
            return
        if self._skip and bytes(frame.kind) in self._skip:
            self._sink.status()
            return
        outcome = "ok"
        for attr in self._required:
            value = getattr(frame, attr)
            if value is None or (type(value) is msgspec.Raw and not value):
                outcome = "invalid"
                break
        latency = None
        if self._has_stamp:
            stamp = frame.stamp
            if stamp is None:
                outcome = "invalid"
            else:
                latency = max(0.0, arrived - stamp * self._scale)
        interval = None if self._last_at is None else arrived - self._last_at
        self._last_at = arrived
        missed = 0
        if self._has_seq:
            seq = frame.seq
            if seq is not None:
                if self._last_seq is not None and seq > self._last_seq + 1:
                    missed = seq - self._last_seq - 1
                self._last_seq = seq
        self._sink.frame(outcome, latency, interval, missed)
