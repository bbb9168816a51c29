"""One WebSocket client of the target: a bounded drop-oldest send queue and its sender task.

The publisher only ever appends to the queue, so a slow client never blocks it; the sender
task drains the queue into the socket at whatever pace the client reads. When the queue is
full the oldest frame is dropped, as in the seed backend, and the client sees a `seq` gap.
"""

from __future__ import annotations

import asyncio
from collections import deque

from aiohttp import WSCloseCode, WSMsgType, web


class ClientConnection:
    """A connected WS client: its socket, its send queue and the task that drains it."""

    def __init__(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport, queue_size: int
    ) -> None:
        self.ws = ws
        self._transport = transport
        self.queue: deque[bytes] = deque(maxlen=queue_size)
        self._wakeup = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the sender task; call once, after the handshake."""
        self._sender = asyncio.create_task(self._send_forever())

    def enqueue(self, frame: bytes) -> bool:
        """Queue a frame for sending; return True if the oldest queued frame was dropped."""
        dropped = len(self.queue) == self.queue.maxlen
        self.queue.append(frame)  # a full deque(maxlen) drops from the other end
        self._wakeup.set()
        return dropped

    async def _send_forever(self) -> None:
        queue = self.queue
        try:
            while True:
                while not queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                # The same bytes object goes to every client: serialized once per publish.
                await self.ws.send_frame(queue.popleft(), WSMsgType.TEXT)
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
