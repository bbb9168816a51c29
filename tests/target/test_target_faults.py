"""Fault injection on the reference target, driven through the real /admin/faults endpoint."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from target_support import eventually, next_data_frame, recv_text, scaled
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from loadsvc.target.faults import InvalidFaults
from loadsvc.target.testing import RunningTarget

NO_FAULTS: dict[str, Any] = {
    "latency_ms": {},
    "error_ratio": {},
    "ws_delay_ms": {},
    "malformed_ratio": {},
    "stall": [],
}


async def timed_get(target: RunningTarget, path: str) -> tuple[int, float]:
    start = time.monotonic()
    async with target.session.get(target.url + path) as resp:
        await resp.read()
        return resp.status, time.monotonic() - start


async def test_latency_fault_delays_only_its_rest_path_until_cleared(
    target: RunningTarget,
) -> None:
    """latency_ms delays responses on its REST path by that much; DELETE removes the delay."""
    await target.set_faults({"latency_ms": {"/api/market/foreign-detail": 300}})
    status, elapsed = await timed_get(target, "/api/market/foreign-detail")
    assert status == 200
    assert elapsed >= 0.29
    _, other = await timed_get(target, "/api/market/snapshot")
    assert other < 0.29
    await target.clear_faults()
    _, cleared = await timed_get(target, "/api/market/foreign-detail")
    assert cleared < 0.29


async def test_latency_fault_on_a_ws_path_delays_the_handshake(target: RunningTarget) -> None:
    """latency_ms on a WS path delays the opening handshake by that much."""
    await target.set_faults({"latency_ms": {"/ws/alerts": 300}})
    start = time.monotonic()
    async with connect(target.ws_url + "/ws/alerts"):
        assert time.monotonic() - start >= 0.29


async def test_error_ratio_fault_answers_500_in_that_fraction(target: RunningTarget) -> None:
    """error_ratio 1.0 makes every request 500, 0.5 about half, and DELETE none."""
    path = "/api/market/snapshot"
    await target.set_faults({"error_ratio": {path: 1.0}})
    assert {(await timed_get(target, path))[0] for _ in range(5)} == {500}
    await target.set_faults({"error_ratio": {path: 0.5}})
    statuses = [(await timed_get(target, path))[0] for _ in range(60)]
    assert 10 <= statuses.count(500) <= 50
    assert statuses.count(500) + statuses.count(200) == 60
    await target.clear_faults()
    assert {(await timed_get(target, path))[0] for _ in range(5)} == {200}
    assert (await target.stats())["rest_errors"][path] == 5 + statuses.count(500)


async def test_error_ratio_fault_refuses_ws_handshakes_with_503(target: RunningTarget) -> None:
    """error_ratio on a WS path refuses that fraction of handshakes with HTTP 503."""
    await target.set_faults({"error_ratio": {"/ws/market": 1.0}})
    with pytest.raises(InvalidStatus) as refused:
        async with connect(target.ws_url + "/ws/market"):
            pass
    assert refused.value.response.status_code == 503
    await target.clear_faults()
    async with connect(target.ws_url + "/ws/market"):
        pass


async def test_ws_delay_fault_delivers_late_but_keeps_the_publish_stamp(
    fast_target: RunningTarget,
) -> None:
    """ws_delay_ms delivers frames that much after their published_at; DELETE restores it."""

    async def delivery_latency_after(moment: float, ws: ClientConnection) -> float:
        while True:
            frame = await next_data_frame(ws)
            if frame["published_at"] > moment:
                return time.time() - float(frame["published_at"])

    async with connect(fast_target.ws_url + "/ws/market") as ws:
        await fast_target.set_faults({"ws_delay_ms": {"/ws/market": 300}})
        delayed = [await delivery_latency_after(time.time(), ws) for _ in range(3)]
        await fast_target.clear_faults()
        prompt = await delivery_latency_after(time.time(), ws)
    assert min(delayed) >= 0.29, delayed
    assert prompt < 0.29


async def test_stall_fault_stops_a_channel_until_cleared(fast_target: RunningTarget) -> None:
    """A stalled WS channel publishes nothing; once cleared it resumes with the next seq."""
    async with connect(fast_target.ws_url + "/ws/foreign") as ws:
        seen = (await next_data_frame(ws))["seq"]
        await fast_target.set_faults({"stall": ["/ws/foreign"]})
        last_seq = fast_target.runtime.publishers["/ws/foreign"].seq
        while seen < last_seq:  # frames published before the stall took effect
            seen = (await next_data_frame(ws))["seq"]
        # Ten throttle periods of silence: a bounded observation that nothing is published.
        with pytest.raises(TimeoutError):
            await next_data_frame(ws, within=0.5)
        await fast_target.clear_faults()
        assert (await next_data_frame(ws))["seq"] == last_seq + 1


async def test_stall_fault_holds_rest_requests_until_cleared(target: RunningTarget) -> None:
    """A stalled REST path holds its requests; other paths answer; clearing answers them."""
    await target.set_faults({"stall": ["/api/market/foreign-detail"]})
    held = asyncio.create_task(timed_get(target, "/api/market/foreign-detail"))
    done, _ = await asyncio.wait([held], timeout=scaled(0.3))
    assert not done
    assert (await timed_get(target, "/api/market/snapshot"))[0] == 200
    assert not held.done()
    await target.set_faults({"stall": []})
    status, _ = await asyncio.wait_for(held, scaled(2.0))
    assert status == 200


async def test_malformed_fault_sends_the_same_garbage_to_every_client(
    fast_target: RunningTarget,
) -> None:
    """malformed_ratio 1.0 turns every published frame into non-JSON text, identical for all
    clients; DELETE restores JSON frames."""

    async def garbage(ws: ClientConnection, count: int) -> list[str]:
        found: list[str] = []
        while len(found) < count:
            text = await recv_text(ws)
            try:
                orjson.loads(text)
            except orjson.JSONDecodeError:
                found.append(text)
        return found

    async with (
        connect(fast_target.ws_url + "/ws/market") as first,
        connect(fast_target.ws_url + "/ws/market") as second,
    ):
        await fast_target.set_faults({"malformed_ratio": {"/ws/market": 1.0}})
        a, b = await asyncio.gather(garbage(first, 5), garbage(second, 8))
        assert set(a) & set(b), "the same malformed frames reach both clients"
        await fast_target.clear_faults()
        moment = time.time()
        async with asyncio.timeout(scaled(2.0)):
            while True:  # skip the garbage still queued, up to a frame published after DELETE
                text = await recv_text(first)
                if not text.startswith("<<malformed>>"):
                    frame = orjson.loads(text)
                    if frame["type"] == "market" and frame["published_at"] > moment:
                        break
    assert (await fast_target.stats())["frames_malformed"]["/ws/market"] >= 8


async def test_drop_connections_aborts_without_a_close_frame(fast_target: RunningTarget) -> None:
    """drop_connections 1.0 aborts every connection on the path (no close frame), leaves other
    paths alone, and is not kept in the fault state."""
    async with (
        connect(fast_target.ws_url + "/ws/market") as first,
        connect(fast_target.ws_url + "/ws/market") as second,
        connect(fast_target.ws_url + "/ws/foreign") as bystander,
    ):
        for ws in (first, second, bystander):
            await next_data_frame(ws)
        answer = await fast_target.set_faults({"drop_connections": {"/ws/market": 1.0}})
        assert answer["dropped"] == {"/ws/market": 2}
        for ws in (first, second):
            with pytest.raises(ConnectionClosedError) as closed:
                while True:
                    await recv_text(ws)
            assert closed.value.rcvd is None, "no close frame was received"
        await next_data_frame(bystander)
    assert await fast_target.faults() == NO_FAULTS
    assert (await fast_target.stats())["connections_dropped"]["/ws/market"] == 2


async def test_drop_connections_drops_that_fraction(fast_target: RunningTarget) -> None:
    """drop_connections 0.5 with four open connections aborts two of them."""
    clients = [await connect(fast_target.ws_url + "/ws/alerts") for _ in range(4)]
    try:
        answer = await fast_target.set_faults({"drop_connections": {"/ws/alerts": 0.5}})
        assert answer["dropped"] == {"/ws/alerts": 2}

        async def two_left() -> bool:
            return bool((await fast_target.stats())["connections"]["/ws/alerts"] == 2)

        await eventually(two_left, what="two connections left")
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_faults_merge_path_by_path_and_delete_clears_all(target: RunningTarget) -> None:
    """POST merges into the current faults (null removes a path), GET shows them, DELETE
    clears them all."""
    await target.set_faults({"latency_ms": {"/api/market/snapshot": 100}, "stall": ["/ws/alerts"]})
    await target.set_faults(
        {
            "latency_ms": {"/ws/market": 50},
            "error_ratio": {"/api/market/alerts": 0.25},
            "ws_delay_ms": {"/ws/foreign": 150},
            "malformed_ratio": {"/ws/market": 0.1},
        }
    )
    await target.set_faults({"latency_ms": {"/ws/market": None}})
    assert await target.faults() == {
        "latency_ms": {"/api/market/snapshot": 100.0},
        "error_ratio": {"/api/market/alerts": 0.25},
        "ws_delay_ms": {"/ws/foreign": 150.0},
        "malformed_ratio": {"/ws/market": 0.1},
        "stall": ["/ws/alerts"],
    }
    assert await target.clear_faults() == NO_FAULTS
    assert await target.faults() == NO_FAULTS


BAD_BODIES: list[tuple[Any, str]] = [
    ({"latency": {"/ws/market": 1}}, "unknown fault key 'latency'"),
    ({"latency_ms": {"/api/market/alerts?limit=5": 1}}, "unknown path"),
    ({"latency_ms": {"/api/market/snapshot": -1}}, "between 0 and"),
    ({"latency_ms": {"/api/market/snapshot": "slow"}}, "finite number"),
    ({"error_ratio": {"/api/market/snapshot": 1.5}}, "ratio between 0 and 1"),
    ({"error_ratio": {"/api/market/snapshot": True}}, "finite number"),
    ({"ws_delay_ms": {"/api/market/snapshot": 10}}, "unknown path"),
    ({"malformed_ratio": [0.1]}, "must be an object"),
    ({"stall": "/ws/market"}, "must be a list"),
    ({"stall": ["/nope"]}, "unknown path '/nope'"),
    ({"drop_connections": {"/ws/market": None}}, "finite number"),
    ([1, 2], "must be a JSON object"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
async def test_a_bad_fault_body_is_rejected_with_400(
    target: RunningTarget, body: Any, message: str
) -> None:
    """A fault body with an unknown key, unknown path or bad value answers 400 and changes
    nothing."""
    await target.set_faults({"latency_ms": {"/api/market/snapshot": 10}})
    async with target.session.post(target.url + "/admin/faults", json=body) as resp:
        assert resp.status == 400
        answer = await resp.json()
    assert any(message in detail for detail in answer["details"]), answer
    assert (await target.faults())["latency_ms"] == {"/api/market/snapshot": 10.0}


async def test_a_body_that_is_not_json_is_rejected_with_400(target: RunningTarget) -> None:
    """A fault body that is not JSON answers 400 with a message saying so."""
    async with target.session.post(target.url + "/admin/faults", data=b"{stall") as resp:
        assert resp.status == 400
        assert "not JSON" in (await resp.json())["details"][0]


async def test_every_error_in_a_body_is_reported(target: RunningTarget) -> None:
    """All the problems of a fault body are reported at once, through set_faults' exception."""
    with pytest.raises(InvalidFaults) as rejected:
        await target.set_faults(
            {"bogus": 1, "error_ratio": {"/ws/market": 2}, "stall": ["/x", "/ws/market", "/y"]}
        )
    assert len(rejected.value.errors) == 4
