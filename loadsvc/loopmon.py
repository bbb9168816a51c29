"""The generator watching itself: event-loop lag.

A timer that fires late means every timestamp the generator takes is late by
as much, so lag is the generator's own contribution to measured latency. When
it is large against a threshold, a failed verdict is the generator's fault, not
the backend's, and the run says so (``generator_bound``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from loadsvc.runstats import LatencySamples

INTERVAL_S = 0.05  # what lag makes the generator busy: loadsvc.lag


class LoopLagSink(Protocol):
    """Where the monitor reports each lag sample (the recorder)."""

    def loop_lag(self, lag: float) -> None:
        """One sample: how late a timer ran, in seconds."""


class LoopLagMonitor:
    """Samples the event loop's lateness every ``interval`` seconds."""

    def __init__(self, sink: LoopLagSink | None, interval: float = INTERVAL_S) -> None:
        self._sink = sink
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._windows: list[LatencySamples] = []

    def start(self) -> None:
        """Start sampling on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def open_window(self) -> LatencySamples:
        """Start collecting lag samples for a run; they accumulate until ``close_window``."""
        window = LatencySamples()
        self._windows.append(window)
        return window

    def close_window(self, window: LatencySamples) -> None:
        """Stop collecting into ``window``."""
        with contextlib.suppress(ValueError):
            self._windows.remove(window)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        sink = self._sink
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            lag = max(0.0, loop.time() - due)
            for window in self._windows:
                window.add(lag)
            if sink is not None:
                sink.loop_lag(lag)
