"""Test bodies on a fresh event loop of each kind: asyncio's and uvloop's (what the generator runs).

Their transports differ (uvloop's implement ``asyncio.Transport`` without subclassing
it), so the protocol clients are tested on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

Run = Callable[[Coroutine[Any, Any, None]], None]
LOOP_KINDS = ("asyncio", "uvloop")


def loop_runner(kind: str) -> Run:
    """Something that runs a test body to completion on a new loop of ``kind``."""
    factory = uvloop.new_event_loop if kind == "uvloop" else asyncio.new_event_loop

    def run(body: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(body)

    return run
