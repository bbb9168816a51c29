"""Locust's WS user for the bench: websocket-client under gevent, one Locust event per frame.

Each frame is parsed (orjson) and reported to Locust's statistics as a request
whose response time is the delivery latency (receive time minus
``published_at``), the way Locust WS users are usually written. UTF-8
validation in websocket-client is skipped: without the optional ``wsaccel`` it
is a pure-Python loop per byte, and ``recv()`` decodes (and so validates) the
text in C anyway.
"""

from __future__ import annotations

import time

import orjson
import websocket
from locust import User, constant, task

from bench.clients.locust_common import HarnessShape

__all__ = ["HarnessShape", "StreamUser"]


class StreamUser(User):
    """A /ws/market client."""

    wait_time = constant(0)

    def on_start(self) -> None:
        """Connect."""
        url = self.host.replace("http://", "ws://", 1) + "/ws/market"
        self.ws = websocket.create_connection(url, skip_utf8_validation=True)

    def on_stop(self) -> None:
        """Disconnect."""
        self.ws.close()

    @task
    def stream(self) -> None:
        """Receive for ever; every frame becomes one Locust request event."""
        fire = self.environment.events.request.fire
        while True:
            message = self.ws.recv()
            arrived = time.time()
            doc = orjson.loads(message)
            name = "status" if doc["type"] == "status" else "/ws/market"
            fire(
                request_type="WS",
                name=name,
                response_time=(arrived - doc["published_at"]) * 1000,
                response_length=len(message),
                exception=None,
                context={},
            )
