"""REST users: weighted tasks, paced or with think time."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random

import aiohttp
import orjson

from loadsvc.config.spec import EndpointRef, HttpTaskSpec, RestUserSpec
from loadsvc.recorder import HttpSink
from loadsvc.users.base import UserContext


class _Task:
    """A task with everything a request needs resolved once."""

    __slots__ = ("expect", "method", "required", "sink", "url")

    def __init__(self, spec: HttpTaskSpec, url: str, sink: HttpSink) -> None:
        self.method = spec.method
        self.url = url
        self.expect = frozenset(spec.expect_status)
        self.required = frozenset(spec.required_keys)
        self.sink = sink


def task_refs(spec: RestUserSpec) -> list[EndpointRef]:
    """The endpoint of each task, in order."""
    return [EndpointRef(t.endpoint, "http", t.method) for t in spec.tasks]


class RestUser:
    """A REST client.

    Paced (``pacing_s``): one request per interval on a fixed schedule whose
    phase is random per user (a population, not a lockstep crowd); latency is
    measured from the *intended* start, so when the backend stalls the waiting
    time is counted rather than hidden (coordinated omission). A request that
    should already have started goes out at once.

    Think time: the closed model; latency from the send, then a uniform pause.
    """

    def __init__(
        self,
        spec: RestUserSpec,
        ctx: UserContext,
        session: aiohttp.ClientSession,
        sinks: list[HttpSink],
        rng: random.Random,
    ) -> None:
        self.busy = False
        self._spec = spec
        self._ctx = ctx
        self._session = session
        self._rng = rng
        self._tasks = [
            _Task(t, ctx.target.http_url(t.path), s) for t, s in zip(spec.tasks, sinks, strict=True)
        ]
        self._cum_weights = list(itertools.accumulate(t.weight for t in spec.tasks))
        self._timeout = aiohttp.ClientTimeout(total=spec.timeout_s)

    def _choose(self) -> _Task:
        if len(self._tasks) == 1:
            return self._tasks[0]
        x = self._rng.random() * self._cum_weights[-1]
        return self._tasks[bisect.bisect_right(self._cum_weights, x)]

    async def run(self) -> None:
        """Request until stopped."""
        if self._spec.pacing_s is not None:
            await self._run_paced(self._spec.pacing_s)
        else:
            assert self._spec.think_time_s is not None
            await self._run_thinking(*self._spec.think_time_s)

    async def _run_paced(self, interval: float) -> None:
        clock = self._ctx.clock
        stopping = self._ctx.stopping
        intended = clock() + self._rng.random() * interval
        while not stopping.is_set():
            delay = intended - clock()
            if delay > 0:
                await asyncio.sleep(delay)
                if stopping.is_set():
                    return
            await self._request(self._choose(), intended)
            intended += interval

    async def _run_thinking(self, low: float, high: float) -> None:
        clock = self._ctx.clock
        stopping = self._ctx.stopping
        while not stopping.is_set():
            await self._request(self._choose(), clock())
            await asyncio.sleep(self._rng.uniform(low, high))

    async def _request(self, task: _Task, started: float) -> None:
        self.busy = True
        outcome = "ok"
        got_response = True
        try:
            async with self._session.request(
                task.method, task.url, timeout=self._timeout, allow_redirects=False
            ) as resp:
                body = await resp.read()
                if resp.status not in task.expect:
                    outcome = "http_error"
                elif task.required:
                    outcome = _validate(body, task.required)
        except TimeoutError:
            outcome = "timeout"
        except (aiohttp.ClientError, OSError):
            outcome = "connection_error"
            got_response = False
        finally:
            self.busy = False
        task.sink.request(self._ctx.clock() - started if got_response else None, outcome)


def _validate(body: bytes, required: frozenset[str]) -> str:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "invalid"
    if not isinstance(doc, dict) or not required <= doc.keys():
        return "invalid"
    return "ok"
