"""Frame judging: outcomes, delivery latency, intervals and sequence gaps, without a network."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry

from loadsvc.config.spec import (
    ConstantShapeSpec,
    EndpointRef,
    ScenarioSpec,
    WsMessageSpec,
    WsStreamUserSpec,
)
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder, WsSink
from loadsvc.runstats import EndpointStats
from loadsvc.users.frames import FrameReader

KEYS = ("quotes", "indices", "foreign", "derivatives", "prices")
MARKET = WsMessageSpec(required_keys=KEYS)


def reader(spec: WsMessageSpec = MARKET) -> tuple[FrameReader, EndpointStats, CollectorRegistry]:
    registry = CollectorRegistry()
    recorder = Recorder(create_metrics(registry), clock=lambda: 0.0)
    scenario = ScenarioSpec(
        "s", ConstantShapeSpec(1, 1.0), (WsStreamUserSpec("/ws/market", "/ws/market"),)
    )
    stats = recorder.begin(scenario)
    sink: WsSink = recorder.ws_sink(stats, EndpointRef("/ws/market", "ws"))
    return FrameReader(spec, sink), stats.endpoints[("ws", "/ws/market", "")], registry


def frame(**fields: object) -> bytes:
    body: dict[str, object] = {"type": "market", **{k: {} for k in KEYS}}
    body.update(fields)
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


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
    assert st.missed == 1


def test_frames_without_stamp_or_sequence_config_are_not_timed() -> None:
    """With no timestamp field configured nothing is timed and nothing is invalid for lacking one."""
    r, st, _ = reader(WsMessageSpec(timestamp_field=None, sequence_field=None))
    r.feed(b'{"type": "x"}', arrived=1.0)
    assert st.outcomes == {"ok": 1} and len(st.latency.samples) == 0
