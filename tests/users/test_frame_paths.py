"""Frames of other backends: nested fields, stamp units and RFC 3339, per-key sequences,
msgpack binary frames, heartbeats and the acknowledgement, without a network."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

import msgpack
import pytest
from prometheus_client import CollectorRegistry

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
from loadsvc.users.frames import FrameReader

NESTED = WsMessageSpec(
    type_field="op",
    skip_types=("status",),
    timestamp_field="meta.ts",
    sequence_field="d.seq",
    sequence_key="d.sym",
    required_keys=("d.sym", "d.px"),
)


def reader(spec: WsMessageSpec, **conversation: Any) -> tuple[FrameReader, EndpointStats]:
    recorder = Recorder(create_metrics(CollectorRegistry()), clock=lambda: 0.0)
    scenario = ScenarioSpec("s", ConstantShapeSpec(1, 1.0), (WsStreamUserSpec("/q", "/q"),))
    stats = recorder.begin(scenario)
    sink = recorder.ws_sink(stats, EndpointRef("/q", "ws"))
    return FrameReader(spec, sink, **conversation), stats.endpoints[("ws", "/q", "")]


def quote(sym: str, seq: int, ts: object, **extra: object) -> dict[str, object]:
    return {
        "op": "data",
        "meta": {"ts": ts, "src": "x"},
        "d": {"sym": sym, "seq": seq, "px": 1.5},
        **extra,
    }


def text(body: Mapping[str, object]) -> str:
    return json.dumps(body)


def test_nested_fields_are_read_by_path() -> None:
    """meta.ts times the frame, d.sym and d.px are required inside d, op is the type."""
    r, st = reader(NESTED)
    r.feed(text(quote("VCB", 1, 100.0)), arrived=100.02)
    r.feed(text({"op": "status", "meta": {"ts": 100.0}}), arrived=100.03)
    r.feed(
        text({"op": "data", "meta": {"ts": 100.0}, "d": {"seq": 2, "sym": "VCB"}}), arrived=100.1
    )
    r.feed(text({"op": "data", "d": {"seq": 3, "sym": "VCB", "px": 1}}), arrived=100.1)  # no meta
    r.feed(
        text({"op": "data", "meta": None, "d": {"seq": 4, "sym": "VCB", "px": 1}}), arrived=100.1
    )
    assert st.outcomes == {"ok": 1, "status": 1, "invalid": 3}
    # A frame missing a required key is invalid yet still timed (as before): its stamp is read.
    assert [round(x, 6) for x in st.latency.samples] == [0.02, 0.1]


@pytest.mark.parametrize(
    ("unit", "stamp"),
    [
        ("s", 1_700_000_000.250),
        ("ms", 1_700_000_000_250),
        ("us", 1_700_000_000_250_000),
        ("ns", 1_700_000_000_250_000_000),
        ("rfc3339", "2023-11-14T22:13:20.25Z"),
        ("rfc3339", "2023-11-15T05:13:20.250000000+07:00"),
    ],
)
def test_each_timestamp_unit_gives_the_same_latency(unit: str, stamp: object) -> None:
    """The same instant written in s, ms, us, ns or RFC 3339 (any zone) times the same."""
    spec = WsMessageSpec(timestamp_field="meta.ts", timestamp_unit=unit, sequence_field=None)  # type: ignore[arg-type]
    r, st = reader(spec)
    r.feed(text({"type": "q", "meta": {"ts": stamp}}), arrived=1_700_000_000.2535)
    assert st.outcomes == {"ok": 1}
    (latency,) = st.latency.samples
    assert latency == pytest.approx(0.0035, abs=1e-6)


@pytest.mark.parametrize("stamp", ["2023-11-14T22:13:20.25", "yesterday", 1_700_000_000, None])
def test_an_unreadable_rfc3339_stamp_is_invalid(stamp: object) -> None:
    """No zone, not a date, a number or null: the frame is invalid and not timed, no crash."""
    r, st = reader(
        WsMessageSpec(timestamp_field="ts", timestamp_unit="rfc3339", sequence_field=None)
    )
    r.feed(text({"type": "q", "ts": stamp}), arrived=1_700_000_001.0)
    assert st.outcomes == {"invalid": 1} and len(st.latency.samples) == 0


def test_interleaved_symbols_are_not_gaps_and_a_real_gap_is_counted_per_symbol() -> None:
    """Two symbols with their own sequences interleave without a gap; VCB skipping 3 and 4
    and FPT skipping 7 are exactly three missed frames, a repeated FPT 2 a duplicate."""
    r, st = reader(NESTED)
    order = [("VCB", 1), ("FPT", 1), ("VCB", 2), ("FPT", 2), ("FPT", 3), ("VCB", 5), ("FPT", 2)]
    order += [("FPT", 4), ("FPT", 5), ("FPT", 6), ("FPT", 8), ("VCB", 6)]
    for sym, seq in order:
        r.feed(text(quote(sym, seq, 1.0)), arrived=1.0)
    assert st.missed == 0  # gaps are judged when they leave the window or the connection ends
    r.end_connection()
    assert st.missed == 3
    assert st.outcomes == {"ok": 11, "duplicate": 1}
    assert st.anomalies == {"duplicate": 1}


def test_one_sequence_per_connection_sees_interleaved_symbols_as_chaos() -> None:
    """Without sequence_key the same interleaving is reordering and duplicates (the old way)."""
    spec = WsMessageSpec(
        type_field="op", timestamp_field="meta.ts", sequence_field="d.seq", sequence_key=None
    )
    r, st = reader(spec)
    for sym, seq in [("VCB", 1), ("FPT", 1), ("VCB", 2), ("FPT", 2)]:
        r.feed(text(quote(sym, seq, 1.0)), arrived=1.0)
    assert st.outcomes.get("duplicate") == 2


def test_sequence_keys_past_the_limit_are_counted_untracked_not_grown() -> None:
    """A backend sending ever new symbols fills max_sequence_keys; the rest are counted
    'untracked' (delivered, not sequence-checked) and never tracked."""
    spec = WsMessageSpec(
        type_field="op", timestamp_field="meta.ts", sequence_field="d.seq",
        sequence_key="d.sym", max_sequence_keys=3,
    )  # fmt: skip
    r, st = reader(spec)
    for i in range(1000):
        r.feed(text(quote(f"S{i}", 1, 1.0)), arrived=1.0)
    r.feed(text(quote("S0", 3, 1.0)), arrived=1.0)  # a tracked key still counts its gap
    assert r._keyed is not None and len(r._keyed._trackers) == 3
    assert st.anomalies == {"untracked": 997}
    assert st.outcomes == {"ok": 1001}
    r.end_connection()
    assert st.missed == 1


def test_msgpack_binary_frames_are_judged_like_json() -> None:
    """With binary: msgpack a frame packed by the msgpack library is read by path, its
    null required key invalid, its status type skipped; garbage is malformed."""
    spec = WsMessageSpec(
        type_field="op", timestamp_field="meta.ts", timestamp_unit="rfc3339",
        sequence_field="d.seq", sequence_key="d.sym", required_keys=("d.px",), binary="msgpack",
    )  # fmt: skip
    r, st = reader(spec)
    stamp = datetime.datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=datetime.UTC)
    r.feed(msgpack.packb(quote("VCB", 1, stamp.isoformat())), arrived=stamp.timestamp() + 0.004)
    r.feed(
        msgpack.packb(
            quote(
                "VCB",
                2,
                stamp,
            ),
            datetime=True,
        ),
        arrived=stamp.timestamp() + 0.006,
    )
    bad = quote("VCB", 3, stamp.isoformat())
    bad["d"]["px"] = None  # type: ignore[index]
    r.feed(msgpack.packb(bad), arrived=stamp.timestamp() + 0.001)
    r.feed(msgpack.packb({"op": "status"}), arrived=1.0)
    r.feed(memoryview(b"\xc1\xc1"), arrived=1.0)  # 0xc1 is never used in msgpack
    r.feed(
        text(quote("VCB", 4, stamp.isoformat())), arrived=stamp.timestamp() + 0.005
    )  # text: JSON
    assert st.outcomes == {"ok": 3, "invalid": 1, "status": 1, "malformed": 1}
    assert [round(x, 6) for x in st.latency.samples] == [0.004, 0.006, 0.001, 0.005]


class Control:
    """Records what a conversation is told."""

    def __init__(self) -> None:
        self.heartbeats: list[Mapping[str, Any]] = []
        self.acks = 0

    def heartbeat(self, fields: Mapping[str, Any]) -> None:
        self.heartbeats.append(fields)

    def acknowledged(self) -> None:
        self.acks += 1


def test_frames_before_the_ack_are_status_and_heartbeats_are_answered_apart() -> None:
    """Until {op: ack} nothing is data; a ping is counted as status, never timed, and its
    fields handed over for the reply; after the ack data is judged."""
    spec = WsMessageSpec(type_field="op", timestamp_field="meta.ts", sequence_field="d.seq")
    r, st = reader(
        spec,
        ack=WsMatch((("op", "ack"),)),
        heartbeat=WsMatch((("op", "ping"),)),
        reply_paths=("id", "meta.n"),
    )
    control = Control()
    r.control = control
    r.new_connection()
    r.feed(text(quote("VCB", 1, 1.0)), arrived=1.0)  # before the ack: not data
    r.feed(text({"op": "ping", "id": "p1", "meta": {"n": 7}}), arrived=1.0)
    r.feed(text({"op": "ack"}), arrived=1.0)
    r.feed(text(quote("VCB", 2, 1.0)), arrived=1.01)
    r.feed(text({"op": "ping", "id": 2}), arrived=1.0)
    assert control.acks == 1
    assert control.heartbeats == [{"id": "p1", "meta.n": 7}, {"id": 2, "meta.n": None}]
    assert st.outcomes == {"status": 4, "ok": 1} and st.count == 1
    r.new_connection()  # a new connection awaits its own ack
    r.feed(text(quote("VCB", 3, 1.0)), arrived=1.0)
    assert st.outcomes == {"status": 5, "ok": 1}
