"""Everything one running target owns: market, faults, channels, counters, background loops."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from loadsvc.target.faults import FaultState
from loadsvc.target.market import JsonObject, MarketState
from loadsvc.target.paths import (
    FOREIGN_DETAIL_PATH,
    REST_PATHS,
    SNAPSHOT_PATH,
    WS_ALERTS_PATH,
    WS_FOREIGN_PATH,
    WS_MARKET_PATH,
    WS_PATHS,
)
from loadsvc.target.publisher import ChannelPublisher
from loadsvc.target.settings import TargetSettings

_CLOSE_TIMEOUT_S = 1.0


class TargetRuntime:
    """The state behind one target app; the route handlers are thin views onto it."""

    def __init__(self, settings: TargetSettings) -> None:
        self.settings = settings
        self.market = MarketState(settings.seed, settings.alert_probability, settings.alert_history)
        self.faults = FaultState()
        # Separate from the market's RNG so injecting faults does not change the market data.
        self._fault_rng = random.Random(settings.seed + 1)
        channels = (
            (WS_MARKET_PATH, "market", self.market.market_payload),
            (WS_FOREIGN_PATH, "foreign", self.market.foreign_payload),
            (WS_ALERTS_PATH, "alert", self.market.take_new_alerts),
        )
        self.publishers: dict[str, ChannelPublisher] = {
            path: ChannelPublisher(
                path, frame_type, payload, settings.throttle_s, self.faults, self._fault_rng
            )
            for path, frame_type, payload in channels
        }
        self.rest_requests: Counter[str] = Counter()
        self.rest_errors: Counter[str] = Counter()
        self.handshakes_refused: Counter[str] = Counter()
        self._rest_bodies: dict[str, tuple[int, bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # Lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the market ticker and the status broadcaster in the running loop."""
        self._tasks = [
            asyncio.create_task(self._tick_forever(), name="target-market-ticker"),
            asyncio.create_task(self._broadcast_status_forever(), name="target-status"),
        ]

    async def shutdown(self) -> None:
        """Stop the loops, release held requests and close every WS client."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks = []
        # Answer the requests a stall holds, so that the server can finish them.
        self.faults.clear()
        await asyncio.gather(
            *(publisher.close(_CLOSE_TIMEOUT_S) for publisher in self.publishers.values())
        )

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        tick_s = self.settings.tick_s
        market_channels = (self.publishers[WS_MARKET_PATH], self.publishers[WS_FOREIGN_PATH])
        alerts = self.publishers[WS_ALERTS_PATH]
        deadline = loop.time()
        while True:
            # A fixed schedule rather than sleep(tick_s), so a busy loop does not slow the
            # market down; if we fell behind, skip ahead instead of bursting.
            deadline = max(deadline + tick_s, loop.time())
            await asyncio.sleep(deadline - loop.time())
            alert_raised = self.market.tick()
            for publisher in market_channels:
                publisher.mark_changed()
            if alert_raised:
                alerts.mark_changed()

    async def _broadcast_status_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.status_interval_s)
            for publisher in self.publishers.values():
                publisher.broadcast_status()

    # Faults ------------------------------------------------------------------------------

    def roll(self, ratio: float) -> bool:
        """True with probability `ratio`, from the fault RNG."""
        return ratio > 0 and self._fault_rng.random() < ratio

    def drop_connections(self, ratios: dict[str, float]) -> dict[str, int]:
        """Abort that fraction of each WS path's open connections; return how many per path."""
        return {
            path: self.publishers[path].drop_connections(ratio) for path, ratio in ratios.items()
        }

    # REST --------------------------------------------------------------------------------

    def rest_body(self, path: str) -> bytes:
        """The serialized body of a snapshot or foreign-detail response.

        Cached per market version: hundreds of pollers between two ticks share one body.
        """
        cached = self._rest_bodies.get(path)
        if cached is not None and cached[0] == self.market.version:
            return cached[1]
        payload: JsonObject
        if path == SNAPSHOT_PATH:
            payload = self.market.market_payload()
        elif path == FOREIGN_DETAIL_PATH:
            payload = self.market.foreign_payload()
        else:
            raise KeyError(path)
        body = orjson.dumps(payload)
        self._rest_bodies[path] = (self.market.version, body)
        return body

    # Stats -------------------------------------------------------------------------------

    def delivery(self) -> dict[str, Any]:
        """Ground truth per WS path: (write time - publish stamp) quantiles since the reset."""
        return {path: self.publishers[path].delivery.to_json() for path in WS_PATHS}

    def reset_delivery(self) -> None:
        """Start a new ground-truth window on every WS path."""
        for publisher in self.publishers.values():
            publisher.delivery.reset()

    def stats(self) -> dict[str, Any]:
        """Counters for tests and benchmarks, keyed by path."""
        pubs = self.publishers

        def per_channel(read: Callable[[ChannelPublisher], int]) -> dict[str, int]:
            return {path: read(pubs[path]) for path in WS_PATHS}

        return {
            "market_ticks": self.market.version,
            "connections": per_channel(lambda p: len(p.clients)),
            "handshakes": per_channel(lambda p: p.handshakes),
            "handshakes_refused": {path: self.handshakes_refused[path] for path in WS_PATHS},
            "connections_dropped": per_channel(lambda p: p.connections_dropped),
            "frames_published": per_channel(lambda p: p.frames_published),
            "frames_malformed": per_channel(lambda p: p.frames_malformed),
            "frames_dropped": per_channel(lambda p: p.frames_dropped),
            "queue_depth_max": per_channel(lambda p: p.queue_depth_max()),
            "rest_requests": {path: self.rest_requests[path] for path in REST_PATHS},
            "rest_errors": {path: self.rest_errors[path] for path in REST_PATHS},
        }
