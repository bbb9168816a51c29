"""The generator watching itself: event-loop lag, and whether it is busy now.

A timer that fires late means every timestamp the generator takes is late by
as much, so lag is the generator's own contribution to measured latency. What
lag makes the generator busy, and what lag may excuse, is :mod:`loadsvc.lag`.

Besides the per-run windows the verdict reads, the monitor keeps the samples of
the last :data:`~loadsvc.lag.BUSY_SPAN_S` seconds and, once a second, judges
them with the same nearest-rank p99 and :func:`~loadsvc.lag.is_busy` the
verdict uses: the ``loadsvc_generator_busy`` gauge, its alert and the status
page read that one :class:`GeneratorState`.

It also takes, at every sample, what kernel-stamped reads say about the generator
(:mod:`loadsvc.lag`'s kernel rule): the stamp-to-read delays of the reads since
the last sample (:func:`loadsvc.users.arrival.take_read_delays`) and the frames
that shared a read (:class:`loadsvc.users.wsconn.ArrivalBacklog`), into every open
:class:`ReadWindow` (a run's verdict window) and the recent span.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from array import array
from collections import deque
from typing import Protocol

import numpy as np

from loadsvc.lag import BUSY_SPAN_S, GeneratorState, ReadTiming
from loadsvc.latency import LIVE_BUCKETS, LatencySamples, exact_quantiles, live_bucket_counts
from loadsvc.timeseries import quantile_of
from loadsvc.users.arrival import take_read_delays
from loadsvc.users.backlog import ArrivalBacklog

INTERVAL_S = 0.05  # what lag makes the generator busy: loadsvc.lag
STATE_EVERY_S = 1.0  # how often the recent span is judged (a p99 of ~200 samples)


def bucket_counts(values: array[float]) -> np.ndarray:
    """``values`` (seconds) counted in the live histogram's buckets, at numpy's speed."""
    return live_bucket_counts(
        np.frombuffer(values, dtype=np.float64) if len(values) else np.zeros(0)
    )


class ReadWindow:
    """Kernel-stamped reads over a span: stamp-to-read delays and frames that shared a read."""

    def __init__(self) -> None:
        self.delays = np.zeros(LIVE_BUCKETS, np.int64)
        self.waits = np.zeros(LIVE_BUCKETS, np.int64)
        self.shared_frames = 0

    def add(self, delays: np.ndarray, waits: np.ndarray, shared: int) -> None:
        """Take one sample's reads (bucket counts) and frames that shared a read."""
        self.delays += delays
        self.waits += waits
        self.shared_frames += shared

    def timing(self) -> ReadTiming:
        """The span's :class:`~loadsvc.lag.ReadTiming` (p99s at the live histogram's 1 %)."""
        delay, wait = quantile_of(self.delays, 0.99), quantile_of(self.waits, 0.99)
        return ReadTiming(
            None if math.isnan(delay) else delay,
            self.shared_frames,
            None if math.isnan(wait) else wait,
        )


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
        self._read_windows: list[ReadWindow] = []
        # The recent span's reads, one ReadWindow a second (the last one filling).
        self._recent_reads: deque[ReadWindow] = deque(maxlen=max(1, round(span_s)))
        self._reads = ReadTiming()  # the last judged span's
        self._shared_seen: int | None = None  # the backlog's count at the last sample

    @property
    def state(self) -> GeneratorState:
        """The last judged lag p99 against the trust limit configured now."""
        return GeneratorState(self._lag_p99_s, self.limit_s, self._span_s, self._reads)

    def judge_recent(self) -> GeneratorState:
        """Judge the recent span now (the monitor does it once a second by itself)."""
        self._lag_p99_s = exact_quantiles(array("d", self._recent), (0.99,))[0.99]
        merged = ReadWindow()
        for second in self._recent_reads:
            merged.add(second.delays, second.waits, second.shared_frames)
        self._reads = merged.timing()
        self._recent_reads.append(ReadWindow())  # the next second fills a new one
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

    def open_reads(self) -> ReadWindow:
        """Start collecting kernel-stamped reads for a run, until ``close_reads``."""
        window = ReadWindow()
        self._read_windows.append(window)
        return window

    def close_reads(self, window: ReadWindow) -> None:
        """Stop collecting into ``window``."""
        with contextlib.suppress(ValueError):
            self._read_windows.remove(window)

    def sample_reads(self) -> None:
        """Take the reads since the last sample into the open windows (at every lag sample)."""
        backlog = ArrivalBacklog.of(asyncio.get_running_loop())
        seen, self._shared_seen = self._shared_seen, backlog.frames_sharing_a_read
        shared = 0 if seen is None else backlog.frames_sharing_a_read - seen
        delays, waits = take_read_delays(), backlog.take_shared_waits()
        if not (len(delays) or len(waits) or shared):
            return
        delay_counts, wait_counts = bucket_counts(delays), bucket_counts(waits)
        if not self._recent_reads:
            self._recent_reads.append(ReadWindow())
        for window in (*self._read_windows, self._recent_reads[-1]):
            window.add(delay_counts, wait_counts, shared)

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
            self.sample_reads()
            if sink is not None:
                sink.loop_lag(lag)
            count += 1
            if count % self._state_every == 0:  # not per sample: no quantile on every tick
                self.judge_recent()
