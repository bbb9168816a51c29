"""One WS channel of the target: trailing-edge throttle, sequence numbers and fan-out.

A change marks the channel dirty; if no publish is pending, one is scheduled `throttle_s`
later and publishes the state as it is then (the seed's DataPublisher). Each published frame
is serialized once and the same bytes are appended to every client's queue.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Callable, Collection
from typing import Any

import orjson

from loadsvc.target.connection import ClientConnection
from loadsvc.target.delivery import DeliveryRecord
from loadsvc.target.faults import FaultState

JsonObject = dict[str, Any]


def garble(frame: bytes) -> bytes:
    """A non-JSON but valid UTF-8 rendering of `frame`, as a broken backend might send."""
    half = frame[: len(frame) // 2].decode("utf-8", "ignore")
    return f"<<malformed>>{half}".encode()


class ChannelPublisher:
    """Publishes one channel's frames to its clients, honouring the channel's faults."""

    def __init__(
        self,
        path: str,
        frame_type: str,
        payload: Callable[[], JsonObject],
        throttle_s: float,
        faults: FaultState,
        rng: random.Random,
    ) -> None:
        self.path = path
        self.frame_type = frame_type
        self._payload = payload
        self._throttle_s = throttle_s
        self._faults = faults
        self._rng = rng
        self.clients: set[ClientConnection] = set()
        self.delivery = DeliveryRecord()
        self.seq = 0
        self.handshakes = 0
        self.frames_published = 0
        self.frames_malformed = 0
        self.frames_dropped = 0
        self.connections_dropped = 0
        self._pending: asyncio.TimerHandle | None = None
        self._delayed: dict[int, asyncio.TimerHandle] = {}
        self._delayed_ids = itertools.count()
        self._closed = False

    # Throttle and publish ----------------------------------------------------------------

    def mark_changed(self) -> None:
        """Note that the channel's state changed; publish it at the end of the throttle."""
        if self._pending is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self._throttle_s, self._publish)

    def _publish(self) -> None:
        self._pending = None
        if self._faults.is_stalled(self.path):
            # A stalled channel publishes nothing and consumes no seq; the next change after
            # the stall is cleared publishes the then-current state with the next seq.
            return
        self.seq += 1
        published_at = time.time()
        frame: JsonObject = {
            "type": self.frame_type,
            "seq": self.seq,
            "published_at": published_at,
            **self._payload(),
        }
        data = orjson.dumps(frame)
        stamp: float | None = published_at
        if self._roll(self._faults.malformed_ratio(self.path)):
            data = garble(data)
            self.frames_malformed += 1
            stamp = None  # no client can read its stamp, so it is not part of the truth
        self.frames_published += 1
        delay = self._faults.ws_delay_s(self.path)
        if delay > 0:
            # Stamped now, handed to the queues later: a slow pipeline between the publisher
            # and the sockets, which delivery latency (receive minus published_at) must show.
            key = next(self._delayed_ids)
            loop = asyncio.get_running_loop()
            clients = tuple(self.clients)
            self._delayed[key] = loop.call_later(
                delay, self._deliver_delayed, key, data, stamp, clients
            )
        else:
            self._deliver(data, self.clients, stamp)

    def _deliver_delayed(
        self,
        key: int,
        data: bytes,
        stamp: float | None,
        clients: tuple[ClientConnection, ...],
    ) -> None:
        del self._delayed[key]
        self._deliver(data, [client for client in clients if client in self.clients], stamp)

    def _deliver(
        self, data: bytes, clients: Collection[ClientConnection], stamp: float | None = None
    ) -> None:
        dropped = 0
        for client in clients:
            dropped += client.enqueue(data, stamp)
        self.frames_dropped += dropped

    def _roll(self, ratio: float) -> bool:
        return ratio > 0 and self._rng.random() < ratio

    # Status frames -----------------------------------------------------------------------

    def status_frame(self) -> bytes:
        """A `status` frame: outside the seq numbering, stamped with the current time."""
        return orjson.dumps(
            {
                "type": "status",
                "channel": self.frame_type,
                "clients": len(self.clients),
                "last_seq": self.seq,
                "published_at": time.time(),
            }
        )

    def broadcast_status(self) -> None:
        """Queue one status frame, serialized once, for every client."""
        if self.clients and not self._closed:
            self._deliver(self.status_frame(), self.clients)

    # Clients -----------------------------------------------------------------------------

    def add(self, client: ClientConnection) -> None:
        """Register a client that has completed its handshake and greet it with a status."""
        self.handshakes += 1
        self.clients.add(client)
        client.enqueue(self.status_frame())

    def remove(self, client: ClientConnection) -> None:
        """Forget a client whose connection has ended."""
        self.clients.discard(client)

    def drop_connections(self, ratio: float) -> int:
        """Abort `ratio` of the open connections (rounded up) without a close frame."""
        if not self.clients:
            return 0
        # The epsilon keeps float noise (0.3 * 10 = 3.0000000000000004) from rounding up.
        count = min(len(self.clients), math.ceil(ratio * len(self.clients) - 1e-9))
        for client in self._rng.sample(list(self.clients), count):
            client.abort()
        self.connections_dropped += count
        return count

    def queue_depth_max(self) -> int:
        """The longest send queue among the connected clients."""
        return max((len(client.queue) for client in self.clients), default=0)

    async def close(self, timeout: float) -> None:
        """Stop publishing and close every client (1001), aborting those that hang."""
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        await asyncio.gather(*(client.close(timeout) for client in list(self.clients)))
