"""Helpers shared by the reference target's tests: scaled timeouts, frame reading, polling."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

# One knob to stretch every timeout on a slow or busy machine (as python-websockets does).
TIMEOUT_SCALE = float(os.environ.get("LOADSVC_TEST_TIMEOUT_SCALE", "1"))


def scaled(seconds: float) -> float:
    """`seconds` stretched by the suite's timeout factor."""
    return seconds * TIMEOUT_SCALE


async def recv_text(ws: ClientConnection, within: float = 2.0) -> str:
    """The next message as text, or TimeoutError after `within` seconds."""
    message = await asyncio.wait_for(ws.recv(), scaled(within))
    assert isinstance(message, str), "the target sends text frames"
    return message


async def recv_json(ws: ClientConnection, within: float = 2.0) -> dict[str, Any]:
    """The next message, parsed as a JSON object."""
    frame = orjson.loads(await recv_text(ws, within))
    assert isinstance(frame, dict)
    return frame


async def next_data_frame(ws: ClientConnection, within: float = 2.0) -> dict[str, Any]:
    """The next frame that is not a status frame."""
    async with asyncio.timeout(scaled(within)):
        while True:
            frame = await recv_json(ws, within)
            if frame["type"] != "status":
                return frame


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    within: float = 5.0,
    what: str = "condition",
) -> None:
    """Poll `check` until it is true; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(within)
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not hold within {within} s")
        await asyncio.sleep(0.02)
