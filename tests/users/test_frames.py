"""Frame judging: outcomes, delivery latency, intervals and sequence gaps, without a network."""

from __future__ import annotations

import json

import orjson
import pytest
from prometheus_client import CollectorRegistry

from loadsvc.config import ConfigError, parse_config
from loadsvc.config.spec import (
    ConstantShapeSpec,
    EndpointRef,
    ScenarioSpec,
    WsMatch,
    WsMessageSpec,
    WsStreamUserSpec,
)
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.runstats import EndpointStats
from loadsvc.users.base import WsSink
from loadsvc.users.frames import REORDER_WINDOW, FrameReader

KEYS = ("quotes", "indices", "foreign", "derivatives", "prices")
MARKET = WsMessageSpec(required_keys=KEYS)


def ws_sink() -> tuple[WsSink, EndpointStats, CollectorRegistry]:
    """The recorder's sink of one /ws/market endpoint, its run stats and its registry."""
    registry = CollectorRegistry()
    recorder = Recorder(create_metrics(registry), clock=lambda: 0.0)
    scenario = ScenarioSpec(
        "s", ConstantShapeSpec(1, 1.0), (WsStreamUserSpec("/ws/market", "/ws/market"),)
    )
    stats = recorder.begin(scenario)
    sink: WsSink = recorder.ws_sink(stats, EndpointRef("/ws/market", "ws"))
    return sink, stats.endpoints[("ws", "/ws/market", "")], registry


def reader(spec: WsMessageSpec = MARKET) -> tuple[FrameReader, EndpointStats, CollectorRegistry]:
    sink, stats, registry = ws_sink()
    return FrameReader(spec, sink), stats, registry


def frame(**fields: object) -> bytes:
    body: dict[str, object] = {"type": "market", **{k: {} for k in KEYS}}
    body.update(fields)
    # json, not orjson: a test may need integers past 64 bits
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def test_valid_frames_are_timed_from_their_publish_stamp() -> None:
    """Delivery latency is arrival minus published_at; interval is between data frames."""
    r, st, _ = reader()
    r.feed(frame(seq=1, published_at=100.0), arrived=100.020)
    r.feed(frame(seq=2, published_at=100.5), arrived=100.530)
    assert st.outcomes == {"ok": 2}
    assert [round(v, 6) for v in st.latency.samples] == [0.02, 0.03]


def test_sequence_gaps_count_missed_messages() -> None:
    """seq 1 then 5 means 3 messages never arrived; a new connection forgets the old seq."""
    r, st, registry = reader()
    r.feed(frame(seq=1, published_at=1.0), arrived=1.0)
    r.feed(frame(seq=5, published_at=2.0), arrived=2.0)
    assert st.missed == 0  # still inside the reorder window: they may come late
    r.new_connection()
    r.feed(frame(seq=40, published_at=3.0), arrived=3.0)
    assert st.missed == 3
    assert (
        registry.get_sample_value(
            "loadsvc_ws_messages_missed_total", {"scenario": "s", "endpoint": "/ws/market"}
        )
        == 3
    )


def test_status_frames_are_counted_not_validated() -> None:
    """A status frame lacks the payload keys but is neither an error nor timed."""
    r, st, _ = reader()
    r.feed(orjson.dumps({"type": "status", "published_at": 1.0}), arrived=5.0)
    assert st.outcomes == {"status": 1} and st.errors == 0 and st.status_messages == 1
    assert st.count == 0  # data frames only: status frames have their own counter
    assert len(st.latency.samples) == 0


def test_missing_key_wrong_types_and_garbage_are_errors() -> None:
    """A missing key or a non-numeric stamp is invalid; non-JSON is malformed; all are errors."""
    r, st, _ = reader()
    r.feed(frame(seq=1, published_at=1.0, prices=None), arrived=1.0)
    r.feed(frame(seq=2, published_at="soon"), arrived=1.0)
    r.feed(b"[1, 2]", arrived=1.0)
    r.feed(b"<<malformed>>{", arrived=1.0)
    assert st.outcomes == {"invalid": 3, "malformed": 1}
    assert st.errors == 4


def test_millisecond_stamps_and_custom_fields() -> None:
    """timestamp_unit ms and renamed fields are honoured."""
    spec = WsMessageSpec(
        required_keys=("data",),
        type_field="kind",
        timestamp_field="ts",
        timestamp_unit="ms",
        sequence_field="n",
    )
    r, st, _ = reader(spec)
    r.feed(orjson.dumps({"kind": "tick", "ts": 1000, "n": 1, "data": 1}), arrived=1.25)
    r.feed(orjson.dumps({"kind": "tick", "ts": 2000, "n": 3, "data": 1}), arrived=2.5)
    assert st.outcomes == {"ok": 2}
    assert list(st.latency.samples) == [0.25, 0.5]
    r.end_connection()
    assert st.missed == 1


def test_frames_without_stamp_or_sequence_config_are_not_timed() -> None:
    """With no timestamp field configured nothing is timed and nothing is invalid for lacking one."""
    r, st, _ = reader(WsMessageSpec(timestamp_field=None, sequence_field=None))
    r.feed(b'{"type": "x"}', arrived=1.0)
    assert st.outcomes == {"ok": 1} and len(st.latency.samples) == 0


def seqs(*numbers: int) -> tuple[EndpointStats, CollectorRegistry]:
    """Feed frames with these sequence numbers on one connection, then end it."""
    r, st, registry = reader()
    for n in numbers:
        r.feed(frame(seq=n, published_at=1.0), arrived=1.0)
    r.end_connection()
    return st, registry


def test_pairwise_swapped_sequence_is_reordered_not_missed() -> None:
    """2,1,4,3,...: every late frame fills its gap; nothing is missed."""
    order = [n for i in range(1, 600, 2) for n in (i + 1, i)]
    st, registry = seqs(*order)
    assert st.missed == 0
    assert st.anomalies == {"reordered": 300}
    labels = {"scenario": "s", "endpoint": "/ws/market", "kind": "reordered"}
    assert registry.get_sample_value("loadsvc_ws_sequence_anomalies_total", labels) == 300


def test_duplicates_are_counted_as_such() -> None:
    """A number already received on the connection is a duplicate, not a gap, and never a
    delivered frame: not in ``count``, not timed."""
    st, _ = seqs(1, 2, 2, 3, 1, 4)
    assert st.anomalies == {"duplicate": 2} and st.missed == 0
    assert st.count == 4 and st.outcomes == {"ok": 4, "duplicate": 2}
    assert st.latency.count == 4


def test_frames_after_the_connection_ended_are_neither_delivered_nor_missed() -> None:
    """Frames still arriving from a connection being closed (in flight at the deadline) are
    not judged: seq 1, 3 then end; 5, 7 after it change nothing (1 missed: 2)."""
    r, st, _ = reader()
    for n in (1, 3):
        r.feed(frame(seq=n, published_at=1.0), arrived=1.0)
    r.end_connection()
    for n in (5, 7):
        r.feed(frame(seq=n, published_at=1.0), arrived=1.0)
    r.end_connection()
    assert st.count == 2 and st.missed == 1


def test_null_required_key_is_missing_unless_nullable() -> None:
    """``"prices": null`` is invalid; with ``nullable_keys: [prices]`` it is ok, and an absent
    key is still invalid."""
    r, st, _ = reader()
    r.feed(frame(seq=1, published_at=1.0).replace(b'"prices": {}', b'"prices": null'), 1.0)
    assert st.outcomes == {"invalid": 1}
    r, st, _ = reader(WsMessageSpec(required_keys=KEYS, nullable_keys=("prices",)))
    r.feed(frame(seq=1, published_at=1.0).replace(b'"prices": {}', b'"prices": null'), 1.0)
    r.feed(frame(seq=2, published_at=1.0).replace(b', "prices": {}', b""), 1.0)
    assert st.outcomes == {"ok": 1, "invalid": 1}


def test_required_keys_read_typed_or_nothing_required_are_judged() -> None:
    """A required key that is also the stamp or sequence field (read typed: absent is None,
    zero is present) is invalid when absent or null; with no required keys every frame is ok."""
    r, st, _ = reader(WsMessageSpec(required_keys=("seq", "published_at")))
    r.feed(frame(seq=0, published_at=1.0), 1.0)  # zero is a value
    r.feed(frame(published_at=1.0), 1.0)  # absent
    r.feed(b'{"type": "market", "seq": null, "published_at": 1.0}', 1.0)
    assert st.outcomes == {"ok": 1, "invalid": 2}
    r, st, _ = reader(WsMessageSpec(timestamp_field=None, sequence_field=None))
    r.feed(b"{}", 1.0)
    r.feed(b'{"anything": null}', 1.0)
    assert st.outcomes == {"ok": 2}


def test_gap_is_missed_once_it_leaves_the_reorder_window() -> None:
    """A number still absent REORDER_WINDOW numbers later is missed; a later arrival is a reset."""
    r, st, _ = reader()
    for n in [1, *range(3, 3 + REORDER_WINDOW)]:
        r.feed(frame(seq=n, published_at=1.0), arrived=1.0)
    assert st.missed == 1 and not st.anomalies


def test_sequence_going_backwards_is_a_reset() -> None:
    """A restarted sequence (far backwards) is one reset; the new numbers are then followed."""
    st, _ = seqs(*range(1000, 1100), *range(1, 11))
    assert st.anomalies == {"reset": 1} and st.missed == 0


def test_huge_sequence_numbers_are_handled_and_missed_stays_bounded() -> None:
    """Numbers past 2**64 work; a jump of 2**70 is a reset, not 2**70 missed frames."""
    st, _ = seqs(1, 2**70, 2**70 + 1, 2**70 + 3, 2**70 + 4)
    assert st.anomalies == {"reset": 1}
    assert st.missed == 1
    summary = st.summary(1.0)
    assert orjson.loads(orjson.dumps({"missed": summary.missed}))["missed"] == 1


def test_large_gap_within_bound_counts_every_missed_number() -> None:
    """A forward jump below MAX_SEQUENCE_GAP counts each number in between as missed."""
    st, _ = seqs(1, 5001)
    assert st.missed == 4999 and not st.anomalies


def test_stamp_in_the_future_beyond_tolerance_is_skewed_not_zero() -> None:
    """A stamp 50 ms after the arrival is 'skewed' and untimed; the clock offset shows -50 ms."""
    r, st, registry = reader()
    r.feed(frame(seq=1, published_at=10.05), arrived=10.0)
    r.feed(frame(seq=2, published_at=10.505), arrived=10.5)  # 5 ms ahead: within tolerance
    assert st.outcomes == {"skewed": 1, "ok": 1} and st.errors == 0
    assert list(st.latency.samples) == [0.0]
    assert st.clock_offset_min is not None and round(st.clock_offset_min, 6) == -0.05
    gauge = registry.get_sample_value(
        "loadsvc_ws_clock_offset_seconds", {"scenario": "s", "endpoint": "/ws/market"}
    )
    assert gauge is not None and round(gauge, 6) == -0.05


def test_millisecond_stamps_read_as_seconds_are_skewed_by_decades() -> None:
    """A stamp in ms read with unit s is never timed as 0: skewed, offset about -1.7e12 s."""
    r, st, _ = reader()
    r.feed(frame(seq=1, published_at=1_700_000_000_000), arrived=1_700_000_000.0)
    assert st.outcomes == {"skewed": 1} and len(st.latency.samples) == 0
    assert st.clock_offset_min is not None and st.clock_offset_min < -1e12


def test_clock_tolerance_is_configurable() -> None:
    """With clock_tolerance 0 a stamp 1 ms ahead is already skewed."""
    r, st, _ = reader(WsMessageSpec(required_keys=KEYS, clock_tolerance_s=0.0))
    r.feed(frame(seq=1, published_at=2.001), arrived=2.0)
    assert st.outcomes == {"skewed": 1}


def test_clock_tolerance_is_read_from_the_config() -> None:
    """message.clock_tolerance is a duration; a negative one is refused with its path."""
    base = "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 1, duration: 1s}\n"
    user = "    users:\n      - kind: ws_stream\n        path: /ws/market\n"
    good = parse_config(base + user + "        message: {clock_tolerance: 25ms}\n", "t.yaml")
    (spec,) = good.scenario("s").users
    assert isinstance(spec, WsStreamUserSpec) and spec.message.clock_tolerance_s == 0.025
    with pytest.raises(ConfigError, match="clock_tolerance"):
        parse_config(base + user + "        message: {clock_tolerance: -5ms}\n", "t.yaml")


def test_young_connection_gap_and_late_frame_are_judged_as_in_a_full_window() -> None:
    """Before a connection fills its reorder window, a gap is still missed or filled late."""
    st, _ = seqs(1, 2, 3, 5, 6, 4, 7, 8, 10, *range(11, 11 + REORDER_WINDOW))
    assert st.anomalies == {"reordered": 1} and st.missed == 1
    st, _ = seqs(5, 6, 3, 7, 8)  # a number below the first: the ones between are expected
    assert st.anomalies == {"reordered": 1} and st.missed == 1


def test_a_broadcast_frame_read_by_many_readers_is_judged_by_each_as_alone() -> None:
    """Readers of one stream share the parse of a str they all got (a broadcast) and what
    it says (its type, sequence number, validity and stamp): every reader's judgement is
    the one a reader given its own copy makes, frame after frame, whatever came before."""
    spec = WsMessageSpec(
        required_keys=KEYS,
        timestamp_field="published_at",
        sequence_field="seq",
        skip_types=("status",),
    )
    frames = [
        frame(seq=1, published_at=10.0),
        frame(seq=2, published_at=10.5, quotes=None),  # invalid: a required key missing
        orjson.dumps({"type": "status", "seq": 3, "published_at": 11.0}),  # skipped
        frame(seq=3, published_at=11.0),
        frame(seq=3, published_at=11.0),  # a duplicate
        frame(seq=4, published_at=99.0),  # stamped ahead of its arrival: skewed
        frame(seq=6),  # no stamp: invalid, and seq 5 missed
    ]
    shared = [reader(spec) for _ in range(3)]
    alone, alone_stats, _ = reader(spec)
    for i, raw in enumerate(frames):
        text = raw.decode()  # one str for the shared readers, as wsconn hands a broadcast
        arrived = 20.0 + i
        for r, _, _ in shared:
            r.feed(text, arrived)
        alone.feed(bytes(raw).decode() + " ", arrived)  # its own str, never the memo's
    alone.end_connection()
    for r, st, _ in shared:
        r.end_connection()
        assert st.outcomes == alone_stats.outcomes
        assert list(st.latency.samples) == list(alone_stats.latency.samples)
        assert st.missed == alone_stats.missed == 1
    assert alone_stats.outcomes == {"ok": 2, "invalid": 2, "status": 1, "duplicate": 1, "skewed": 1}


def test_a_frame_parsed_by_a_reader_that_reads_no_further_is_judged_on_its_own() -> None:
    """A reader awaiting its acknowledgement parses a broadcast's frame but reads no field of
    it; a reader already acknowledged then gets the same str: it judges this frame, not
    what the frame before it said."""
    sink, ep, _ = ws_sink()
    spec = WsMessageSpec(required_keys=KEYS, sequence_field="seq")
    ack = WsMatch((("type", "hello"),))

    class Control:
        def heartbeat(self, fields: object) -> None:
            pass

        def acknowledged(self) -> None:
            pass

    waiting, ready = FrameReader(spec, sink, ack=ack), FrameReader(spec, sink, ack=ack)
    for r in (waiting, ready):
        r.control = Control()
        r.new_connection()
    ready.feed(orjson.dumps({"type": "hello"}).decode(), arrived=1.0)
    ready.feed(frame(seq=1, published_at=2.0).decode(), arrived=2.0)  # `ready` alone: ok
    text = frame(seq=2, published_at=3.0, quotes=None).decode()  # a required key missing
    waiting.feed(text, arrived=3.0)  # parsed, then counted as a status frame: no ack yet
    ready.feed(text, arrived=3.0)
    assert ep.outcomes == {"status": 2, "ok": 1, "invalid": 1}
