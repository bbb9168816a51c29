"""One WebSocket client of the target: a bounded drop-oldest send queue and its sender task.

The publisher only ever appends to the queue, so a slow client never blocks it; the sender
task drains the queue into the socket at whatever pace the client reads. When the queue is
full the oldest frame is dropped, as in the seed backend, and the client sees a `seq` gap.
Each data frame carries its publish stamp through the queue; once its bytes are handed to the
transport, the sender records (now - stamp) in the channel's `DeliveryRecord` (ground truth).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from aiohttp import WSCloseCode, WSMsgType, web

from loadsvc.target.delivery import DeliveryRecord

QueuedFrame = tuple[bytes, float | None]
"""A frame's bytes and its publish stamp (None: not a data frame, not recorded)."""


class ClientConnection:
    """A connected WS client: its socket, its send queue and the task that drains it."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        queue_size: int,
        delivery: DeliveryRecord | None = None,
    ) -> None:
        self.ws = ws
        self._transport = transport
        self._delivery = delivery
        self.queue: deque[QueuedFrame] = deque(maxlen=queue_size)
        self._wakeup = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the sender task; call once, after the handshake."""
        self._sender = asyncio.create_task(self._send_forever())

    def enqueue(self, frame: bytes, published_at: float | None = None) -> bool:
        """Queue a frame (with its publish stamp if it is a data frame); True if one was dropped."""
        dropped = len(self.queue) == self.queue.maxlen
        self.queue.append((frame, published_at))  # a full deque(maxlen) drops from the other end
        self._wakeup.set()
        return dropped

    async def _send_forever(self) -> None:
        queue = self.queue
        delivery = self._delivery
        transport = self._transport
        try:
            while True:
                while not queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                frame, published_at = queue.popleft()
                # The same bytes object goes to every client: serialized once per publish.
                await self.ws.send_frame(frame, WSMsgType.TEXT)
                if delivery is not None and published_at is not None:
                    # send_frame has called transport.write (and waited for drain if the
                    # buffer was over its limit): the bytes are in the kernel, unless the
                    # transport still holds some, which the record counts as `buffered`.
                    buffered = transport.get_write_buffer_size() > 0
                    delivery.observe(published_at, time.time(), buffered)
        except (ConnectionError, RuntimeError):
            # The peer went away; the handler notices on its receive side and cleans up.
            return

    def abort(self) -> None:
        """Cut the TCP connection at once, without a close frame (simulates a network drop)."""
        self._transport.abort()

    async def close(self, timeout: float) -> None:
        """Close with 1001 Going Away; abort if the peer does not complete it in `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        except (TimeoutError, ConnectionError):
            self.abort()

    async def stop(self) -> None:
        """Stop the sender task and wait for it to end."""
        if self._sender is not None:
            self._sender.cancel()
            # wait() rather than await: it neither re-raises the task's CancelledError nor
            # swallows a cancellation of the caller.
            await asyncio.wait([self._sender])
