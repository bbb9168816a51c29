"""One timeout scale factor for the whole suite, and polling with a deadline.

``LOADSVC_TEST_TIMEOUT_SCALE`` (default 1) stretches every timeout and deadline
of the tests, as python-websockets' ``WEBSOCKETS_TESTS_TIMEOUT_FACTOR`` does: a
slow or busy machine raises it instead of anyone editing a number in a test.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

TIMEOUT_SCALE = float(os.environ.get("LOADSVC_TEST_TIMEOUT_SCALE", "1"))
T = TypeVar("T")


def scaled(seconds: float) -> float:
    """``seconds`` stretched by the suite's timeout factor."""
    return seconds * TIMEOUT_SCALE


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy (returned); fail after ``timeout`` s.

    ``timeout`` is scaled. An ``OSError`` from ``condition`` (a server not up yet)
    counts as "not yet". The failure says ``what`` did not hold and the last answer.
    """
    deadline = time.monotonic() + scaled(timeout)
    while True:
        try:
            result: T | OSError | None = condition()
        except OSError as exc:
            result = exc
        if result and not isinstance(result, OSError):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {result!r})")
        time.sleep(every)


async def wait_for_async(
    condition: Callable[[], object], timeout: float, what: str, every: float = 0.02
) -> Any:
    """Poll ``condition`` on the running event loop until truthy (returned); fail after
    ``timeout`` s (scaled). ``condition`` may be a coroutine function (a target's stats, say):
    what it returns is awaited."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {result!r})")
        await asyncio.sleep(every)
