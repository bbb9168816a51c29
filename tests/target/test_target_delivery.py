"""Ground truth of the reference target: write time minus publish stamp, per WS path."""

from __future__ import annotations

import time

from target_support import eventually, next_data_frame, recv_json, scaled
from websockets.asyncio.client import connect

from loadsvc.target.delivery import DeliveryRecord
from loadsvc.target.settings import TargetSettings
from loadsvc.target.testing import RunningTarget, running_target

MARKET = "/ws/market"


def test_quantiles_are_bin_edges_of_the_nearest_rank() -> None:
    """p50/p99 are the upper edges (0.1 ms, then 1 ms bins) of the nearest-rank value."""
    record = DeliveryRecord()
    for ms in range(1, 1001):  # 1 ms .. 1000 ms, one each
        record.observe(0.0, ms / 1000, buffered=False)
    q = record.quantiles_ms()
    assert record.count == 1000
    assert q["p50_ms"] is not None and 500.0 <= q["p50_ms"] <= 501.0
    assert q["p99_ms"] is not None and 990.0 <= q["p99_ms"] <= 991.0
    fine = DeliveryRecord()
    for _ in range(10):
        fine.observe(0.0, 0.00234, buffered=True)
    assert fine.quantiles_ms()["p50_ms"] == 2.34  # capped at the largest value seen
    assert fine.buffered == 10


def test_values_past_ten_seconds_report_the_largest_seen() -> None:
    """The overflow bin reports the maximum, so a 20 s frame shows as 20,000 ms, not 10,000."""
    record = DeliveryRecord()
    record.observe(0.0, 20.0, buffered=False)
    assert record.quantiles_ms()["p99_ms"] == 20_000.0
    assert DeliveryRecord().quantiles_ms()["p50_ms"] is None


async def test_every_frame_written_to_every_client_is_one_observation(
    fast_target: RunningTarget,
) -> None:
    """Frames published after a reset count once per connection that received them."""
    clients = 3
    received = 0
    async with (
        connect(fast_target.ws_url + MARKET) as a,
        connect(fast_target.ws_url + MARKET) as b,
        connect(fast_target.ws_url + MARKET) as c,
    ):
        for ws in (a, b, c):
            await next_data_frame(ws)
        await fast_target.reset_delivery()
        after_reset = fast_target.runtime.publishers[MARKET].seq
        for ws in (a, b, c):
            while True:
                frame = await next_data_frame(ws)
                if frame["seq"] > after_reset:
                    received += 1
                if frame["seq"] >= after_reset + 5:
                    break
    truth = (await fast_target.delivery())[MARKET]
    assert received >= clients * 5
    assert truth["count"] >= received
    assert 0.0 <= truth["p50_ms"] <= truth["p99_ms"] <= truth["max_ms"]


async def test_a_delay_between_stamp_and_queue_shows_in_the_ground_truth(
    fast_target: RunningTarget,
) -> None:
    """With ws_delay_ms 150 every write is at least 150 ms after its stamp, and the client's
    own latency (receive - stamp) is never below the target's write latency for that frame."""
    await fast_target.set_faults({"ws_delay_ms": {MARKET: 150}})
    async with connect(fast_target.ws_url + MARKET) as ws:
        await next_data_frame(ws)
        await fast_target.reset_delivery()
        seen: list[float] = []
        while len(seen) < 5:
            frame = await next_data_frame(ws)
            seen.append((time.time() - frame["published_at"]) * 1000)
    truth = (await fast_target.delivery())[MARKET]
    assert truth["count"] >= 4
    assert truth["p50_ms"] >= 150.0
    # The target writes before the client reads: receive - stamp >= write - stamp (0.1 ms bins).
    assert min(seen) + 0.1 >= 150.0
    assert truth["p50_ms"] <= max(seen) + 0.1


async def test_reset_starts_a_new_window(fast_target: RunningTarget) -> None:
    """DELETE /admin/stats/delivery empties every path's window and moves its start."""
    async with connect(fast_target.ws_url + MARKET) as ws:
        await next_data_frame(ws)
        await eventually(
            lambda: fast_target.runtime.publishers[MARKET].delivery.count > 0, what="a write"
        )
        before = (await fast_target.delivery())[MARKET]
        after = await fast_target.reset_delivery()
        assert after[MARKET]["count"] == 0
        assert after[MARKET]["p99_ms"] is None
        assert after[MARKET]["since"] >= before["since"]
        await next_data_frame(ws)
        await eventually(
            lambda: fast_target.runtime.publishers[MARKET].delivery.count > 0,
            what="a write after the reset",
        )


async def test_malformed_and_status_frames_are_not_ground_truth(
    fast_target: RunningTarget,
) -> None:
    """Garbled frames (no readable stamp) and status frames add no observation."""
    await fast_target.set_faults({"malformed_ratio": {MARKET: 1.0}})
    async with connect(fast_target.ws_url + MARKET) as ws:
        assert (await recv_json(ws))["type"] == "status"
        await fast_target.reset_delivery()
        garbled = 0
        while garbled < 3:
            message = await ws.recv()
            garbled += str(message).startswith("<<malformed>>")
        fast_target.runtime.publishers[MARKET].broadcast_status()
        while not str(await ws.recv()).startswith('{"type":"status"'):
            pass  # the status frame has been written once the client reads it
    truth = (await fast_target.delivery())[MARKET]
    assert truth["count"] == 0


async def test_writes_left_in_the_transport_buffer_are_counted_as_buffered() -> None:
    """A client that stops reading fills the socket; writes that leave bytes in the transport
    are counted `buffered` (their observation is a lower bound)."""
    settings = TargetSettings(
        throttle_s=0.01, tick_s=0.005, queue_size=5, ws_send_buffer_bytes=16 * 1024
    )
    async with (
        running_target(settings=settings) as target,
        connect(target.ws_url + MARKET, max_queue=1, close_timeout=scaled(0.2)),
    ):
        record = target.runtime.publishers[MARKET].delivery
        await eventually(lambda: record.buffered > 0, within=10.0, what="a buffered write")
        assert (await target.delivery())[MARKET]["buffered"] >= 1
