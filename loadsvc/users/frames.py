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
from loadsvc.users.base import WsSink

_ABSENT = msgspec.Raw()
_NULL = msgspec.Raw(b"null")
# What SequenceTracker.see returns for a number already delivered on the connection.
DUPLICATE = -1

# Sequence numbers are judged against the last REORDER_WINDOW numbers of a connection: a
# number missing from it is "missed" only once it falls out of the window (or the
# connection ends), so a late frame inside the window is "reordered", not a loss.
REORDER_WINDOW = 64
_FULL = (1 << REORDER_WINDOW) - 1
# A forward jump beyond this many numbers is a reset of the server's sequence (a restart,
# a corrupt or unit-changed field), not that many lost frames: a server with a send queue
# of 50 at a few frames a second cannot lose 100,000 frames on one open connection.
MAX_SEQUENCE_GAP = 100_000


class SequenceTracker:
    """Sequence numbers of one connection: missed, duplicate, reordered and reset frames.

    ``_mask`` bit i says whether number ``_high - i`` arrived; numbers below ``_floor``
    (before the first frame of the connection) are never counted missed. Any integer is
    handled (arbitrary precision); counts stay bounded by ``MAX_SEQUENCE_GAP`` per frame.
    """

    __slots__ = ("_floor", "_high", "_mask", "_sink")

    def __init__(self, sink: WsSink) -> None:
        self._sink = sink
        self._high: int | None = None
        self._floor = 0
        self._mask = 0

    def see(self, seq: int) -> int:
        """Note one sequence number; the numbers now known to be missed, or ``DUPLICATE``."""
        high = self._high
        if high is None:
            self._restart(seq)
            return 0
        d = seq - high
        if d == 1:
            # The common case: the next number, none missing in the window (all of it
            # arrived, or, while a connection is younger than the window, every number
            # since its first). Nothing leaves the window missing, so nothing is counted.
            mask = self._mask
            if mask == _FULL or mask == (1 << (high - self._floor + 1)) - 1:
                self._high = seq
                self._mask = ((mask << 1) | 1) & _FULL
                return 0
        if d > 0:
            if d > MAX_SEQUENCE_GAP:
                missed = self._pending()
                self._sink.sequence_anomaly("reset")
                self._restart(seq)
                return missed
            return self._advance(seq, d)
        back = -d
        if back >= REORDER_WINDOW:
            missed = self._pending()
            self._sink.sequence_anomaly("reset")
            self._restart(seq)
            return missed
        bit = 1 << back
        if self._mask & bit:
            return DUPLICATE
        self._mask |= bit
        self._sink.sequence_anomaly("reordered")
        if seq < self._floor:
            self._floor = seq  # numbers between it and the first frame are now expected
        return 0

    def finish(self) -> int:
        """The connection ended: the numbers still missing in the window are missed."""
        missed = self._pending() if self._high is not None else 0
        self._high = None
        return missed

    def _restart(self, seq: int) -> None:
        self._high = self._floor = seq
        self._mask = 1

    def _expected_in_window(self) -> int:
        assert self._high is not None
        return min(REORDER_WINDOW, self._high - self._floor + 1)

    def _pending(self) -> int:
        """Numbers inside the window, at or above the floor, that have not arrived."""
        return self._expected_in_window() - self._mask.bit_count()

    def _advance(self, seq: int, d: int) -> int:
        assert self._high is not None
        w = REORDER_WINDOW
        # Positions that leave the window: old ones at >= w - d, and the new gap beyond it.
        first_leaving = max(0, w - d)
        last_valid = min(w - 1, self._high - self._floor)
        leaving = max(0, last_valid - first_leaving + 1)
        missed = leaving - (self._mask >> first_leaving).bit_count() + max(0, d - w)
        self._mask = ((self._mask << d) | 1) & _FULL if d < w else 1
        self._high = seq
        return missed


@functools.cache
def frame_decoder(
    spec: WsMessageSpec,
) -> tuple[msgspec.json.Decoder[Any], tuple[str, ...], tuple[str, ...]]:
    """A decoder for frames of ``spec``, the attributes that must be present and not null,
    and those that must be present but may be null (``nullable_keys``).

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
    nullable = frozenset(spec.nullable_keys)
    required = tuple(by_key[k][0] for k in spec.required_keys if k not in nullable)
    present = tuple(by_key[k][0] for k in spec.required_keys if k in nullable)
    return msgspec.json.Decoder(frame_type), required, present


class FrameReader:
    """Judges and times the frames of one connection (its state resets per connection).

    Outcomes: ``malformed`` (not JSON), ``invalid`` (JSON, but not an object, a
    required key missing or ``null`` unless it is one of ``nullable_keys``, or a
    stamp or sequence of the wrong type), ``status`` (a skipped type: counted
    only), ``duplicate`` (a sequence number already delivered: counted apart,
    not timed), ``skewed`` (stamped later than it arrived, beyond
    ``clock_tolerance``: not timed), ``ok``. Delivery latency is the arrival
    time minus the publish stamp (a stamp ahead by less than the tolerance
    times as 0); the interval is between data frames. Sequence numbers go
    through a :class:`SequenceTracker`.

    Between ``end_connection`` and the next ``new_connection`` frames are not
    judged: those still arriving from a connection being closed at the end of a
    run were in flight at its deadline, neither delivered nor missed.
    """

    __slots__ = (
        "_decode", "_has_seq", "_has_stamp", "_last_at", "_open", "_present", "_required",
        "_scale", "_seq", "_sink", "_skip", "_tolerance", "last_delivery",
    )  # fmt: skip

    def __init__(self, spec: WsMessageSpec, sink: WsSink) -> None:
        decoder, self._required, self._present = frame_decoder(spec)
        self._decode = decoder.decode
        self._skip = frozenset(orjson.dumps(t) for t in spec.skip_types)
        self._has_stamp = spec.timestamp_field is not None
        self._has_seq = spec.sequence_field is not None
        self._scale = 0.001 if spec.timestamp_unit == "ms" else 1.0
        self._tolerance = spec.clock_tolerance_s
        self._sink = sink
        self._last_at: float | None = None
        self._seq = SequenceTracker(sink)
        self._open = True  # a new reader reads its first connection
        # Wall time the last data frame arrived (one counted in ``count``: not a status frame,
        # not a duplicate): what a stall is timed from.
        self.last_delivery: float | None = None

    def new_connection(self) -> None:
        """Forget the previous connection (gaps across a reconnect are not server drops),
        counting the numbers it still missed."""
        self.end_connection()
        self._last_at = None
        self._open = True

    def end_connection(self) -> None:
        """The connection ended: numbers still missing from its reorder window are missed,
        and frames still arriving from it are not judged."""
        self._open = False
        missed = self._seq.finish()
        if missed:
            self._sink.missed(missed)

    def feed(self, raw: bytes | bytearray | memoryview | str, arrived: float) -> None:
        """Judge one frame that arrived at wall time ``arrived`` and report it."""
        if not self._open:
            return
        try:
            frame = self._decode(raw)
        except msgspec.ValidationError:
            self.last_delivery = arrived  # a data message, if a broken one: not a silence
            self._sink.frame("invalid", None, None, 0, None)
            return
        except msgspec.DecodeError:
            self.last_delivery = arrived
            self._sink.frame("malformed", None, None, 0, None)
            return
        if self._skip and bytes(frame.kind) in self._skip:
            self._sink.status()
            return
        seq = frame.seq if self._has_seq else None
        missed = 0
        if self._has_seq and seq is None:
            self._sink.sequence_anomaly("unsequenced")  # nothing it could miss is known
        elif seq is not None:
            missed = self._seq.see(seq)
            if missed == DUPLICATE:
                self._sink.duplicate()
                return
        outcome = "ok"
        for attr in self._required:
            value = getattr(frame, attr)
            if value is None or (type(value) is msgspec.Raw and (not value or value == _NULL)):
                outcome = "invalid"
                break
        for attr in self._present:
            value = getattr(frame, attr)
            if type(value) is msgspec.Raw and not value:
                outcome = "invalid"
                break
        latency = offset = None
        if self._has_stamp:
            stamp = frame.stamp
            if stamp is None:
                outcome = "invalid"
            else:
                offset = arrived - stamp * self._scale
                if offset >= 0.0:
                    latency = offset
                elif offset >= -self._tolerance:
                    latency = 0.0  # ahead by less than clocks are kept in step: no delay
                elif outcome == "ok":
                    outcome = "skewed"  # ahead beyond it: a measurement problem, not timed
        interval = None if self._last_at is None else arrived - self._last_at
        self._last_at = self.last_delivery = arrived
        self._sink.frame(outcome, latency, interval, missed, offset)
