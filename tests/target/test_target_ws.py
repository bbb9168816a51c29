"""WebSocket channels of the reference target: frame format, throttle, seq and the send queue."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from target_support import eventually, next_data_frame, recv_json, recv_text, scaled
from websockets.asyncio.client import ClientConnection, connect

from loadsvc.target.settings import TargetSettings
from loadsvc.target.testing import RunningTarget, running_target

CHANNEL_KEYS = {
    "/ws/market": ("market", {"quotes", "indices", "foreign", "derivatives", "prices"}),
    "/ws/foreign": ("foreign", {"summary", "stocks"}),
    "/ws/alerts": ("alert", {"alerts"}),
}


async def test_first_frame_is_a_status_frame_without_seq(target: RunningTarget) -> None:
    """A new client first gets a `status` frame that has `published_at` but no `seq`."""
    async with connect(target.ws_url + "/ws/market") as ws:
        frame = await recv_json(ws)
    assert frame["type"] == "status"
    assert "seq" not in frame
    assert isinstance(frame["published_at"], float)
    assert abs(frame["published_at"] - time.time()) < scaled(5.0)


@pytest.mark.parametrize("path", sorted(CHANNEL_KEYS))
async def test_data_frames_carry_type_seq_stamp_and_seed_keys(
    fast_target: RunningTarget, path: str
) -> None:
    """Each channel's data frames carry its `type`, an int `seq`, a float `published_at`
    and the seed's payload keys."""
    frame_type, keys = CHANNEL_KEYS[path]
    async with connect(fast_target.ws_url + path) as ws:
        frame = await next_data_frame(ws)
    assert frame["type"] == frame_type
    assert isinstance(frame["seq"], int)
    assert isinstance(frame["published_at"], float)
    assert keys <= set(frame)


async def test_default_throttle_publishes_about_every_half_second(target: RunningTarget) -> None:
    """With the seed's 500 ms trailing-edge throttle (and a 100 ms tick) each client gets a
    frame no sooner than 500 ms after the last, and typically within 500-600 ms. Timed by the
    frames' own publish stamps: the target's clock, not how late this test's loop reads."""

    async def stamps(ws: ClientConnection) -> list[float]:
        out: list[float] = []
        while len(out) < 8:
            frame = await next_data_frame(ws, within=scaled(5.0))
            out.append(frame["published_at"])
        return out

    async with (
        connect(target.ws_url + "/ws/market") as first,
        connect(target.ws_url + "/ws/market") as second,
    ):
        both = await asyncio.gather(stamps(first), stamps(second))
    for published in both:
        gaps = sorted(b - a for a, b in itertools.pairwise(published))
        assert gaps[0] >= 0.49, gaps  # never two publishes within the throttle
        # The median gap: a tick or so after the throttle (a 1 s throttle, or publishing on
        # every tick, is far outside); robust to a stall or two of a loaded machine.
        assert gaps[len(gaps) // 2] <= 0.9, gaps


async def test_seq_increments_by_one_and_every_client_gets_the_same_bytes(
    fast_target: RunningTarget,
) -> None:
    """Consecutive frames' `seq` differ by one, and two clients receive identical frames."""

    async def collect(ws: ClientConnection) -> dict[int, str]:
        frames: dict[int, str] = {}
        while len(frames) < 15:
            text = await recv_text(ws)
            if '"type":"status"' not in text:
                frames[seq_of(text)] = text
        return frames

    def seq_of(text: str) -> int:
        seq = text.split('"seq":', 1)[1].split(",", 1)[0]
        return int(seq)

    async with (
        connect(fast_target.ws_url + "/ws/market") as first,
        connect(fast_target.ws_url + "/ws/market") as second,
    ):
        a, b = await asyncio.gather(collect(first), collect(second))
    seqs = sorted(a)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    shared = set(a) & set(b)
    assert len(shared) >= 10
    assert all(a[seq] == b[seq] for seq in shared)


async def test_status_frames_repeat_at_the_configured_interval() -> None:
    """Status frames keep coming every `status_interval_s`, outside the seq numbering."""
    settings = TargetSettings(status_interval_s=0.2)
    async with (
        running_target(settings=settings) as target,
        connect(target.ws_url + "/ws/foreign") as ws,
    ):
        statuses = 0
        async with asyncio.timeout(scaled(3.0)):
            while statuses < 3:
                frame = await recv_json(ws)
                if frame["type"] == "status":
                    assert "seq" not in frame
                    statuses += 1


async def test_a_client_that_does_not_read_loses_the_oldest_frames() -> None:
    """A client that stops reading sees a seq gap (oldest dropped); its queue stays bounded."""
    settings = TargetSettings(
        throttle_s=0.01, tick_s=0.005, queue_size=5, ws_send_buffer_bytes=16 * 1024
    )
    # max_queue=1: the client library stops reading the socket almost at once. It then
    # cannot read the server's close frame behind the backlog, hence a short close_timeout.
    async with (
        running_target(settings=settings) as target,
        connect(target.ws_url + "/ws/market", max_queue=1, close_timeout=scaled(0.2)) as ws,
    ):

        async def frames_dropped() -> bool:
            stats = await target.stats()
            assert stats["queue_depth_max"]["/ws/market"] <= 5
            return bool(stats["frames_dropped"]["/ws/market"] > 0)

        await eventually(frames_dropped, within=10.0, what="the target dropped a frame")
        seqs: list[int] = []
        async with asyncio.timeout(scaled(5.0)):
            while not any(b - a > 1 for a, b in itertools.pairwise(seqs)):
                seqs.append((await next_data_frame(ws))["seq"])
    assert seqs == sorted(seqs), "frames arrive in order; only the oldest are dropped"


async def test_stats_count_open_connections_per_path(target: RunningTarget) -> None:
    """GET /admin/stats counts open connections per WS path, and forgets closed ones."""

    async def connections(path: str) -> int:
        return int((await target.stats())["connections"][path])

    async with connect(target.ws_url + "/ws/alerts") as ws:
        await recv_json(ws)
        assert await connections("/ws/alerts") == 1
        assert await connections("/ws/market") == 0

    async def closed() -> bool:
        return await connections("/ws/alerts") == 0

    await eventually(closed, what="connection forgotten")
