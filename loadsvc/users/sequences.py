"""Sequence numbers of a WS stream: per connection, or per key (one sequence per symbol).

A :class:`SequenceTracker` judges one sequence (missed, duplicate, reordered, reset);
:class:`KeyedSequences` keeps one per key value of a frame (``sequence_key: d.sym``), so
symbols interleaved on one connection are not gaps, bounded in how many keys it tracks.
"""

from __future__ import annotations

import hashlib

from loadsvc.users.base import WsSink

__all__ = ["DUPLICATE", "MAX_SEQUENCE_GAP", "REORDER_WINDOW", "KeyedSequences", "SequenceTracker"]

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


# Longer sequence keys are kept as a 16-byte digest (a symbol is a few bytes).
MAX_KEY_BYTES = 64


class KeyedSequences:
    """One :class:`SequenceTracker` per key value on one connection, at most ``limit`` keys.

    A hostile backend sending a million symbols must not grow a connection's memory without
    bound: once ``limit`` keys are tracked, frames of a new key are not sequence-checked and
    are counted as the anomaly ``untracked`` (delivered, their gaps unknown). Frames without
    the key share one sequence of their own (key ``b""``).
    """

    __slots__ = ("_limit", "_sink", "_trackers")

    def __init__(self, sink: WsSink, limit: int) -> None:
        self._sink = sink
        self._limit = limit
        self._trackers: dict[bytes, SequenceTracker] = {}

    def see(self, key: bytes, seq: int) -> int:
        """Note ``seq`` in the sequence of ``key``: as :meth:`SequenceTracker.see`."""
        if len(key) > MAX_KEY_BYTES:
            # Kept by digest: a backend keying frames by 1 MB strings would otherwise hold
            # ``limit`` of them (a GB) per connection.
            key = hashlib.blake2b(key, digest_size=16).digest()
        tracker = self._trackers.get(key)
        if tracker is None:
            if len(self._trackers) >= self._limit:
                self._sink.sequence_anomaly("untracked")
                return 0
            tracker = self._trackers[key] = SequenceTracker(self._sink)
        return tracker.see(seq)

    def finish(self) -> int:
        """The connection ended: the numbers still missing in every key's window."""
        missed = sum(t.finish() for t in self._trackers.values())
        self._trackers.clear()
        return missed
