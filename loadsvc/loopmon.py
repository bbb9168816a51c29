"""The generator watching itself: event-loop lag, and whether it is busy now.

A timer that fires late means every timestamp the generator takes is late by
as much, so lag is the generator's own contribution to measured latency. What
lag makes the generator busy, and what lag may excuse, is :mod:`loadsvc.lag`.

Besides the per-run windows the verdict reads, the monitor keeps the samples of
the last :data:`~loadsvc.lag.BUSY_SPAN_S` seconds and, once a second, judges
them with the same nearest-rank p99 and :func:`~loadsvc.lag.is_busy` the
verdict uses: the ``loadsvc_generator_busy`` gauge, its alert and the status
page read that one :class:`GeneratorState`.
"""

from __future__ import annotations

import asyncio
import contextlib
from array import array
from collections import deque
from typing import Protocol

from loadsvc.lag import BUSY_SPAN_S, GeneratorState
from loadsvc.runstats import LatencySamples, exact_quantiles

INTERVAL_S = 0.05  # what lag makes the generator busy: loadsvc.lag
STATE_EVERY_S = 1.0  # how often the recent span is judged (a p99 of ~200 samples)


class LoopLagSink(Protocol):
    """Where the monitor reports each lag sample and each judged state (the recorder)."""

    def loop_lag(self, lag: float) -> None:
        """One sample: how late a timer ran, in seconds."""

    def generator_state(self, state: GeneratorState) -> None:
        """The generator's state over the recent span, once a second."""


class LoopLagMonitor:
    """Samples the event loop's lateness every ``interval`` seconds.

    ``limit_s`` is the trust limit (:func:`loadsvc.verdict.trust_limit` of the
    configured scenarios, the tightest); the service sets it again on a reload.
    """

    def __init__(
        self,
        sink: LoopLagSink | None,
        interval: float = INTERVAL_S,
        limit_s: float | None = None,
        span_s: float = BUSY_SPAN_S,
    ) -> None:
        self._sink = sink
        self._interval = interval
        self.limit_s = limit_s
        self._task: asyncio.Task[None] | None = None
        self._windows: list[LatencySamples] = []
        self._span_s = span_s
        # A sample per interval: the ring holds the last span (a blocked loop gives fewer).
        self._recent: deque[float] = deque(maxlen=max(1, round(span_s / interval)))
        self._state_every = max(1, round(STATE_EVERY_S / interval))
        self._lag_p99_s: float | None = None  # the last judged span's

    @property
    def state(self) -> GeneratorState:
        """The last judged lag p99 against the trust limit configured now."""
        return GeneratorState(self._lag_p99_s, self.limit_s, self._span_s)

    def judge_recent(self) -> GeneratorState:
        """Judge the recent span now (the monitor does it once a second by itself)."""
        self._lag_p99_s = exact_quantiles(array("d", self._recent), (0.99,))[0.99]
        state = self.state
        if self._sink is not None:
            self._sink.generator_state(state)
        return state

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
        # loop.time(), the clock the timer itself is scheduled by: on uvloop it is the
        # millisecond cached at the start of an iteration, so a lag is whole milliseconds.
        clock = asyncio.get_running_loop().time
        sink = self._sink
        recent = self._recent
        count = 0
        while True:
            due = clock() + self._interval
            await asyncio.sleep(self._interval)
            lag = max(0.0, clock() - due)
            for window in self._windows:
                window.add(lag)
            recent.append(lag)
            if sink is not None:
                sink.loop_lag(lag)
            count += 1
            if count % self._state_every == 0:  # not per sample: no quantile on every tick
                self.judge_recent()
