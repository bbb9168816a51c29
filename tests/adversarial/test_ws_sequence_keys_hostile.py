"""Hostile per-key sequences: keys that are huge strings, lists or objects, a new key per
frame, sequence numbers that are floats, booleans, negative or beyond 64 bits, and stamps
that are not on any clock; each counted, and a connection's memory bounded."""

from __future__ import annotations

import json
import time
import tracemalloc

import msgpack

from loadsvc.config.spec import WsMessageSpec
from loadsvc.users.sequences import REORDER_WINDOW
from tests.users.test_frame_paths import NESTED, quote, reader


def test_a_thousand_keys_of_64_kb_each_keep_a_connection_small() -> None:
    """1,000 distinct 64 KB sequence keys (64 MB of keys) are tracked in well under a MB:
    a key is kept by a fixed-size digest, not copied whole."""
    frames, stats = reader(NESTED)
    now = time.time()
    bodies = [json.dumps(quote(f"{i:08d}" + "k" * 65536, 1, now)).encode() for i in range(1000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for body in bodies:
            frames.feed(body, now)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert stats.count == 1000 and stats.missed == 0
    assert held < 2_000_000, f"{held / 1e6:.1f} MB held for 1,000 keys"


def test_keys_that_are_lists_objects_or_numbers_are_sequences_of_their_own() -> None:
    """A key that is a list, an object or a number still keys its own sequence: interleaved,
    none of them is a false gap."""
    frames, stats = reader(NESTED)
    now = time.time()
    keys: list[object] = [["VCB", 1], {"s": "FPT"}, 7, None, True]
    for seq in range(1, 6):
        for key in keys:
            body = quote("x", seq, now)
            body["d"]["sym"] = key  # type: ignore[index]
            frames.feed(json.dumps(body), now)
    assert stats.missed == 0 and not stats.anomalies.get("reordered")
    # null is missing for a required key (d.sym): invalid, yet sequenced
    assert stats.outcomes["invalid"] == 5 and stats.outcomes["ok"] == 20


def test_a_new_key_on_every_frame_is_bounded_and_counted_untracked() -> None:
    """100,000 frames each with a new key: at most max_sequence_keys tracked, the rest
    counted untracked, no missed frames invented."""
    spec = WsMessageSpec(**{**NESTED.__dict__, "max_sequence_keys": 50})
    frames, stats = reader(spec)
    now = time.time()
    for i in range(20_000):
        frames.feed(json.dumps(quote(f"S{i}", 1, now)), now)
    assert stats.anomalies["untracked"] == 20_000 - 50
    frames.end_connection()
    assert stats.missed == 0


def test_sequence_numbers_of_every_wrong_type_are_invalid_and_huge_ones_reset() -> None:
    """seq as a float, a bool or a string is invalid; negative and beyond 64 bits are
    numbers like any other: a jump past the window is a reset, not 2**80 missed frames."""
    frames, stats = reader(NESTED)
    now = time.time()
    for bad in (1.5, True, "3"):
        body = quote("VCB", 1, now)
        body["d"]["seq"] = bad  # type: ignore[index]
        frames.feed(json.dumps(body), now)
    assert stats.outcomes["invalid"] == 3
    for seq in (-5, -4, 2**80, 2**80 + 1, -(2**70)):
        frames.feed(json.dumps(quote("FPT", seq, now)), now)
    frames.feed(msgpack.packb(quote("HPG", 2**64 - 1, now)), now)
    assert stats.missed <= REORDER_WINDOW
    assert stats.anomalies["reset"] == 2


def test_stamps_off_any_clock_are_invalid_or_skewed_never_timed() -> None:
    """RFC 3339 year 0, a leap second, no zone, garbage; a number stamp of 1e26 ns: none is
    timed (invalid, or skewed beyond the tolerance)."""
    spec = WsMessageSpec(**{**NESTED.__dict__, "timestamp_unit": "rfc3339"})
    frames, stats = reader(spec)
    now = time.time()
    for stamp in ("0000-01-01T00:00:00Z", "2016-12-31T23:59:60Z", "2026-01-01T00:00:00",
                  "yesterday", 12, "9999-12-31T23:59:59+07:00"):  # fmt: skip
        frames.feed(json.dumps(quote("VCB", 1, stamp)), now)
        frames.end_connection()
        frames.new_connection()
    assert stats.outcomes["invalid"] == 5 and stats.outcomes["skewed"] == 1
    assert stats.outcomes.get("ok", 0) == 0
