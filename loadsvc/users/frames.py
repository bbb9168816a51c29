"""Judging and timing WS frames: one partial decode per frame.

The decoder is built from the configuration (:mod:`loadsvc.users.framelayout`): it reads
only the type, the publish stamp, the sequence number (and its key), the *presence* of
the required keys and what a conversation matches. Their values are left as raw slices
(``msgspec.Raw``), so the payload of a frame (thousands of quotes) is scanned but never
turned into Python objects; that is most of the cost of a frame, and most of what a
generator can save.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec
import orjson

from loadsvc.config.spec import WsMatch, WsMessageSpec
from loadsvc.users.base import WsSink
from loadsvc.users.framelayout import Getter, encodings, frame_layout, raw_value
from loadsvc.users.sequences import (
    DUPLICATE,
    MAX_SEQUENCE_GAP,
    REORDER_WINDOW,
    KeyedSequences,
    SequenceTracker,
)

__all__ = [
    "DUPLICATE",
    "MAX_SEQUENCE_GAP",
    "REORDER_WINDOW",
    "FrameControl",
    "FrameReader",
    "SequenceTracker",
]

_NULL = msgspec.Raw(b"null")
_ABSENT = msgspec.Raw()
_NIL = msgspec.Raw(b"\xc0")  # msgpack's null
# What a frame says whichever connection it came on (FrameReader._facts): shared by the
# readers of a broadcast's frame through the layout's memo.
_Facts = tuple[bool, int | None, str, float | None]


class FrameControl(Protocol):
    """What a conversation does with the frames it asked for (see :mod:`.conversation`)."""

    def heartbeat(self, fields: Mapping[str, Any]) -> None:
        """A heartbeat arrived; ``fields`` holds the values its reply copies, by path."""

    def acknowledged(self) -> None:
        """The acknowledgement awaited arrived."""


# A frame matches when every (path, encodings) pair finds its field encoded one of the ways.
_Matcher = tuple[tuple[Getter, tuple[msgspec.Raw, ...]], ...]


def _matches(frame: Any, matcher: _Matcher) -> bool:
    return all(get(frame) in forms for get, forms in matcher)


class FrameReader:
    """Judges and times the frames of one connection (its state resets per connection).

    Outcomes: ``malformed`` (not JSON, or not msgpack when binary frames are), ``invalid``
    (decoded, but not an object, a required key missing or ``null`` unless it is one of
    ``nullable_keys``, or a stamp or sequence of the wrong type, an unreadable RFC 3339
    stamp or one without a zone), ``status`` (a skipped type, a heartbeat, or any frame
    before the awaited acknowledgement: counted only), ``duplicate`` (a sequence number
    already delivered: counted apart, not timed), ``skewed`` (stamped later than it
    arrived, beyond ``clock_tolerance``: not timed), ``ok``. Delivery latency is the
    arrival time minus the publish stamp (a stamp ahead by less than the tolerance times
    as 0); the interval is between data frames. Sequence numbers go through a
    :class:`SequenceTracker`, one per ``sequence_key`` value when there is one.

    Between ``end_connection`` and the next ``new_connection`` frames are not
    judged: those still arriving from a connection being closed at the end of a
    run were in flight at its deadline, neither delivered nor missed.

    With a conversation (``control``), heartbeats are handed to it, and until the
    acknowledgement it awaits (``awaiting_ack``) every other frame is only counted.
    """

    __slots__ = (
        "_ack", "_decode", "_decode_binary", "_heartbeat", "_key", "_keyed", "_last_at",
        "_memo", "_open", "_present", "_reply", "_required", "_scale", "_seq", "_seq_of", "_sink",
        "_skip", "_stamp_of", "_tolerance", "_type_of", "_typed_required", "awaiting_ack",
        "control", "last_delivery",
    )  # fmt: skip

    def __init__(
        self,
        spec: WsMessageSpec,
        sink: WsSink,
        *,
        ack: WsMatch | None = None,
        heartbeat: WsMatch | None = None,
        reply_paths: tuple[str, ...] = (),
    ) -> None:
        matched = (*(ack.paths if ack else ()), *(heartbeat.paths if heartbeat else ()))
        raw_paths = tuple(dict.fromkeys((*matched, *reply_paths)))
        layout = frame_layout(spec, raw_paths)
        self._decode = layout.json.decode
        self._memo = layout.memo
        # None: binary frames are JSON too, read by the same decoder as text.
        self._decode_binary = layout.msgpack.decode if spec.binary == "msgpack" else None
        self._type_of = layout.kind
        self._stamp_of = layout.stamp
        self._seq_of = layout.seq
        self._key = layout.key
        self._required = layout.required
        self._present = layout.present
        self._typed_required = layout.typed_required
        # Raw slices compare by content: ``in`` over these needs no copy of the type field.
        self._skip = tuple(
            msgspec.Raw(form)
            for t in spec.skip_types
            for form in dict.fromkeys((orjson.dumps(t), msgspec.msgpack.encode(t)))
        )
        self._scale = layout.scale
        self._tolerance = spec.clock_tolerance_s
        self._sink = sink
        self._last_at: float | None = None
        self._seq = SequenceTracker(sink)
        self._keyed = KeyedSequences(sink, spec.max_sequence_keys) if layout.key else None
        self._ack = self._matcher(layout.raw, ack)
        self._heartbeat = self._matcher(layout.raw, heartbeat)
        self._reply = tuple((p, layout.raw[p]) for p in reply_paths)
        self._open = True  # a new reader reads its first connection
        # The conversation this reader reports heartbeats and the acknowledgement to.
        self.control: FrameControl | None = None
        self.awaiting_ack = False
        # Wall time the last data frame arrived (one counted in ``count``: not a status frame,
        # not a duplicate): what a stall is timed from.
        self.last_delivery: float | None = None

    @staticmethod
    def _matcher(raw: Mapping[str, Getter], match: WsMatch | None) -> _Matcher | None:
        if match is None:
            return None
        return tuple((raw[path], encodings(value)) for path, value in match.fields)

    def new_connection(self) -> None:
        """Forget the previous connection (gaps across a reconnect are not server drops),
        counting the numbers it still missed; await the acknowledgement again, if any."""
        self.end_connection()
        self._last_at = None
        self._open = True
        self.awaiting_ack = self._ack is not None

    def end_connection(self) -> None:
        """The connection ended: numbers still missing from its reorder window are missed,
        and frames still arriving from it are not judged."""
        self._open = False
        missed = self._seq.finish()
        if self._keyed is not None:
            missed += self._keyed.finish()
        if missed:
            self._sink.missed(missed)

    def feed(self, raw: bytes | bytearray | memoryview | str, arrived: float) -> None:
        """Judge one frame that arrived at wall time ``arrived`` and report it."""
        if not self._open:
            return
        null = _NULL
        facts: _Facts | None = None
        memo = self._memo
        try:
            if self._decode_binary is not None and type(raw) is not str:
                null = _NIL
                frame = self._decode_binary(raw)  # type: ignore[arg-type]  # not a str
            elif raw is memo.raw:
                # The same str another connection's reader parsed and read: a broadcast.
                frame, facts = memo.frame, memo.facts
            else:
                frame = self._decode(raw)
                if type(raw) is str:
                    memo.raw, memo.frame, memo.facts = raw, frame, None
        except msgspec.ValidationError:
            self.last_delivery = arrived  # a data message, if a broken one: not a silence
            self._sink.frame("invalid", None, None, 0, None)
            return
        except (msgspec.DecodeError, RecursionError):
            # RecursionError: nested deeper than the decoder goes (a 4 KB frame of '[' is
            # enough); undecodable like any other broken frame.
            self.last_delivery = arrived
            self._sink.frame("malformed", None, None, 0, None)
            return
        if self.control is not None and self._converse(frame, null is _NIL):
            return
        if facts is None:
            facts = self._facts(frame, null)
            if frame is memo.frame:
                memo.facts = facts  # for the other readers of this broadcast's frame
        skipped, seq, outcome, stamp = facts
        if skipped:
            self._sink.status()
            return
        missed = 0
        if self._seq_of is not None:
            if seq is None:
                self._sink.sequence_anomaly("unsequenced")  # nothing it could miss is known
            else:
                keyed = self._keyed
                if keyed is None:
                    missed = self._seq.see(seq)
                else:
                    assert self._key is not None
                    missed = keyed.see(bytes(self._key(frame)), seq)
                if missed == DUPLICATE:
                    self._sink.duplicate()
                    return
        latency = offset = None
        if stamp is not None:
            offset = arrived - stamp
            if offset >= 0.0:
                latency = offset
            elif offset >= -self._tolerance:
                latency = 0.0  # ahead by less than clocks are kept in step: no delay
            elif outcome == "ok":
                outcome = "skewed"  # ahead beyond it: a measurement problem, not timed
        interval = None if self._last_at is None else arrived - self._last_at
        self._last_at = self.last_delivery = arrived
        self._sink.frame(outcome, latency, interval, missed, offset)

    def _facts(self, frame: Any, null: msgspec.Raw) -> _Facts:
        """What a frame says whichever connection it came on: whether its type is skipped,
        its sequence number, its outcome before timing (``ok`` or ``invalid``) and its
        publish stamp in seconds (None: none configured, or it has none)."""
        skipped = bool(self._skip) and self._type_of(frame) in self._skip
        seq = None if self._seq_of is None else self._seq_of(frame)
        # Required: present (absent reads as the empty Raw, or None for a typed field) and not
        # null. ``in`` compares Raw slices by content; a number is never equal to one.
        outcome = "ok"
        required = self._required
        if required is not None:
            values = required(frame)
            if _ABSENT in values or null in values or (self._typed_required and None in values):
                outcome = "invalid"
        present = self._present
        if present is not None and _ABSENT in present(frame):
            outcome = "invalid"
        stamp = None
        stamp_of = self._stamp_of
        if stamp_of is not None:
            published = stamp_of(frame)
            if published is None:
                outcome = "invalid"
            else:
                stamp = published * self._scale
        return skipped, seq, outcome, stamp

    def _converse(self, frame: Any, msgpack: bool) -> bool:
        """Hand a heartbeat or the acknowledgement to the conversation; True when the frame
        was one of them or came before the acknowledgement (counted as a status frame)."""
        control = self.control
        assert control is not None
        heartbeat = self._heartbeat
        if heartbeat is not None and _matches(frame, heartbeat):
            try:
                fields = {path: raw_value(get(frame), msgpack) for path, get in self._reply}
            except RecursionError:  # a copied field nested as deep as the decoder goes
                self._sink.frame("malformed", None, None, 0, None)
                return True
            self._sink.status()
            control.heartbeat(fields)
            return True
        if not self.awaiting_ack:
            return False
        self._sink.status()  # before the acknowledgement nothing is data
        if self._ack is not None and _matches(frame, self._ack):
            self.awaiting_ack = False
            control.acknowledged()
        return True
