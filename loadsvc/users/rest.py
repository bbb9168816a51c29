"""REST users: weighted tasks, paced or with think time."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import itertools
import random
import ssl
import time
import weakref
from collections.abc import Callable

import msgspec

from loadsvc.config.spec import HttpTaskSpec, RestUserSpec
from loadsvc.tls import describe_tls_error
from loadsvc.users.base import Credential, HttpSink, UserContext
from loadsvc.users.http1 import Http1Client, Origin, ProtocolError, Response
from loadsvc.users.http_body import BodyTooLarge, decode_body
from loadsvc.users.ratelimit import RateLimitGate, parse_retry_after
from loadsvc.users.request import fill_request
from loadsvc.users.samebytes import SameBytes

_ABSENT = msgspec.Raw()


_NULL = msgspec.Raw(b"null")


@functools.cache
def body_checker(
    required: tuple[str, ...], nullable: frozenset[str] = frozenset()
) -> Callable[[bytes | bytearray], bool]:
    """A check that a body is a JSON object holding every ``required`` key.

    One partial decode (as for WS frames): the body is scanned and validated as
    JSON, but the values are left as raw slices, never built into Python objects.
    A key whose value is ``null`` is missing, unless it is in ``nullable``. An endpoint
    serving one cached document sends every user the same body: a body equal to one checked
    lately gets that one's verdict without a decode (:class:`SameBytes`).
    """
    fields = [
        (f"k{i}", msgspec.Raw, msgspec.field(default=_ABSENT, name=key))
        for i, key in enumerate(required)
    ]
    body_type = msgspec.defstruct("Body", fields, kw_only=True, gc=False)  # as frames.py
    decode = msgspec.json.Decoder(body_type).decode
    strict = tuple(f"k{i}" for i, key in enumerate(required) if key not in nullable)
    present = tuple(f"k{i}" for i, key in enumerate(required) if key in nullable)
    seen: SameBytes[bool] = SameBytes()

    def judge(body: bytes | bytearray) -> bool:
        try:
            doc = decode(body)
        except (msgspec.DecodeError, RecursionError):  # deeper than the decoder goes: broken
            return False
        for a in strict:
            value = getattr(doc, a)
            if not value or value == _NULL:
                return False
        return all(getattr(doc, a) for a in present)

    def check(body: bytes | bytearray) -> bool:
        found = seen.get(body)
        if found is not None:
            return found[1]
        verdict = judge(body)
        seen.keep(body, verdict)
        return verdict

    return check


def _call_weak(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    """Call ``method`` if its object still lives."""
    bound = method()
    if bound is not None:
        bound()


class _Task:
    """A task as one user sends it: its values filled in once, down to the bytes, which are
    rebuilt only when the user's token changes; and the user's 429 gate."""

    __slots__ = ("check", "data", "expect", "gate", "method", "origin", "request", "sink",
                 "version")  # fmt: skip

    def __init__(self, spec: HttpTaskSpec, origin: Origin, ctx: UserContext, sink: HttpSink,
                 gate: RateLimitGate) -> None:  # fmt: skip
        self.method = spec.method
        self.origin = origin
        self.request = fill_request(spec.method, spec.request, spec.path, ctx.values, ctx.target)
        self.data = self.request.encode(origin)
        self.version: int | None = None  # the token ``data`` carries (None: none)
        self.expect = frozenset(spec.expect_status)
        # Only a body that is validated is kept in memory.
        self.check = (
            body_checker(tuple(sorted(set(spec.required_keys))), frozenset(spec.nullable_keys))
            if spec.required_keys
            else None
        )
        self.sink = sink
        self.gate = gate

    def bytes_for(self, credential: Credential | None) -> bytes:
        """The request with ``credential``'s token (encoded again only for a new token)."""
        version = None if credential is None else credential.version
        if version != self.version:
            self.data = self.request.encode(self.origin, credential)
            self.version = version
        return self.data


class RestUser:
    """A REST client with its own keep-alive connection (as a browser tab or a poller has).

    Paced (``pacing_s``): one request per interval on a fixed schedule whose
    phase is random per user (a population, not a lockstep crowd); latency is
    measured from the *intended* start, so when the backend stalls the waiting
    time is counted rather than hidden (coordinated omission). A request that
    should already have started goes out at once.

    Think time: the closed model; latency from the send, then a uniform pause.

    Requests go through :class:`~loadsvc.users.http1.Http1Client`: one keep-alive
    connection per user (as a browser tab or a poller has), at a fraction of the
    per-request cost of aiohttp's ClientSession. Latency ends when the response's
    last byte arrives; decompressing and validating the body come after.

    Every way a request can end is counted (see ``HTTP_OUTCOMES``), including a
    request still outstanding when the run cancels its user at the end: a
    backend that never answers shows as ``timeout``, never as nothing measured.

    A 429 is ``rate_limited`` (no latency: the backend did not do the work) and is
    honoured (:mod:`loadsvc.users.ratelimit`): the user sends nothing more (to any of its
    endpoints) until its gate opens, and a paced schedule starts again from there (the
    waits are counted, never timed as latency). With a scenario ``login`` (``ctx.auth``), every request
    carries the current token, renewed in the idle time before it expires; a 401 drops
    the token, and the request is sent once more with a new one.
    """

    def __init__(
        self,
        spec: RestUserSpec,
        ctx: UserContext,
        sinks: list[HttpSink],
        rng: random.Random,
    ) -> None:
        self.busy = False
        self._spec = spec
        self._ctx = ctx
        self._rng = rng
        origin = Origin.from_url(ctx.target.base_url, ctx.target.tls)
        # The client's connections call back weakly: a bound method would make this user,
        # its client, tasks and sinks a reference cycle, left for the cyclic collector by
        # every user that ends (the burst's 800 at each ramp-down; issue 20).
        stray = weakref.WeakMethod(self._stray_bytes)
        self._client = Http1Client(
            origin, ctx.clock, spec.max_body, functools.partial(_call_weak, stray)
        )
        # One gate for all of a user's tasks: a backend may limit per token or per client,
        # not per route, and a 429 from one endpoint followed by a request to another
        # before Retry-After is hammering all the same.
        gate = RateLimitGate(spec.rate_limit, rng)
        self._tasks = [
            _Task(t, origin, ctx, s, gate) for t, s in zip(spec.tasks, sinks, strict=True)
        ]
        self._last = self._tasks[0]  # the task whose response came last
        self._cum_weights = list(itertools.accumulate(t.weight for t in spec.tasks))
        self._timeout_s = spec.timeout_s
        self._max_decompressed = spec.max_decompressed

    def _choose(self) -> _Task:
        if len(self._tasks) == 1:
            return self._tasks[0]
        x = self._rng.random() * self._cum_weights[-1]
        return self._tasks[bisect.bisect_right(self._cum_weights, x)]

    async def run(self) -> None:
        """Request until stopped; the connection closes when the user ends."""
        try:
            if self._spec.pacing_s is not None:
                await self._run_paced(self._spec.pacing_s)
            else:
                assert self._spec.think_time_s is not None
                await self._run_thinking(*self._spec.think_time_s)
        finally:
            self._client.close()

    async def _run_paced(self, interval: float) -> None:
        clock = self._ctx.clock
        stopping = self._ctx.stopping
        intended = clock() + self._rng.random() * interval
        while not stopping.is_set():
            task = self._choose()
            if task.gate.open_at > intended:
                # Refused with 429: nothing before the gate opens; the schedule starts
                # again there (the slots in between were never due).
                if not await self._sleep_until(task.gate.open_at):
                    return
                intended = clock()
            ok, credential = await self._authorize(intended)
            if not ok:
                return
            delay = intended - clock()
            if delay > 0:
                await asyncio.sleep(delay)
                if stopping.is_set():
                    return
            await self._request(task, intended, credential)
            intended += interval

    async def _run_thinking(self, low: float, high: float) -> None:
        clock = self._ctx.clock
        stopping = self._ctx.stopping
        uniform = self._rng.uniform
        while not stopping.is_set():
            task = self._choose()
            if task.gate.open_at > clock() and not await self._sleep_until(task.gate.open_at):
                return
            credential = None
            if self._ctx.auth is not None:  # no coroutine per request without a login
                ok, credential = await self._authorize(None)
                if not ok:
                    return
            await self._request(task, clock(), credential)
            if high > 0.0:
                await asyncio.sleep(uniform(low, high))
            # Without think time, no sleep(0): a request always waits for the network (its
            # response, or a connect), so a no-think crowd takes turns all the same, and the
            # task is not resumed twice per request.

    async def _sleep_until(self, when: float) -> bool:
        """Wait until ``when`` on the user's clock; False when the run stops meanwhile."""
        stopping = self._ctx.stopping
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), max(0.0, when - self._ctx.clock()))
        return not stopping.is_set()

    async def _authorize(self, at: float | None) -> tuple[bool, Credential | None]:
        """(go on, the token to send) before a request due at ``at``: without a login, no
        token; with one, a token fresh then (a renewal happens now, in the idle time)."""
        auth = self._ctx.auth
        if auth is None:
            return True, None
        credential = await auth.ready(at)
        return credential is not None, credential

    def _stray_bytes(self) -> None:
        """Bytes after the last response was complete: that endpoint broke HTTP/1.1 framing."""
        self._last.sink.request(None, "protocol_error")
        self._last.sink.note("protocol_error", "bytes after the end of the response")

    async def _renewed(self, task: _Task, credential: Credential, response: Response) -> Response:
        """A 401 to a request with ``credential``: the token expired early or was revoked;
        one more try with a new one (``response`` stands when no new one comes)."""
        auth = self._ctx.auth
        assert auth is not None
        auth.rejected(credential)
        renewed = await auth.ready()
        if renewed is not None:
            response = await self._client.request(
                task.bytes_for(renewed), task.method, task.check is not None, self._timeout_s
            )
        return response

    async def _request(self, task: _Task, started: float, credential: Credential | None) -> None:
        self.busy = True
        self._last = task
        clock = self._ctx.clock
        latency: float | None = None  # None: no response to time
        try:
            # The client's request awaited here, not in a coroutine around it (one frame less
            # per request); a 401 to a token is the rare path.
            response = await self._client.request(
                task.bytes_for(credential), task.method, task.check is not None, self._timeout_s
            )
            if response.status == 401 and credential is not None:
                response = await self._renewed(task, credential, response)
            latency = response.arrived - started
            task.sink.arrival_clock(response.arrival_clock)
            if response.status == 429:
                outcome, latency = "rate_limited", None  # refused: no work done to time
                self._refused(task, response)
            elif response.status not in task.expect:
                task.gate.answered()
                outcome = "http_error"
                # The status code, for a person (bounded: a few distinct details per window).
                task.sink.note("http_error", f"HTTP {response.status}")
            elif task.check is not None:
                task.gate.answered()
                outcome = _validate(response, task.check, self._max_decompressed)
            else:
                task.gate.answered()
                outcome = "ok"
        except TimeoutError:
            outcome, latency = "timeout", clock() - started
        except BodyTooLarge:
            outcome = "too_large"
        except ProtocolError:  # before OSError: it is a ConnectionError
            outcome = "protocol_error"
        except ssl.SSLError as exc:  # before OSError: certificate or TLS protocol
            outcome = "tls"
            task.sink.note("tls", describe_tls_error(exc))
        except OSError:  # refused, reset, closed early
            outcome = "connection_error"
        except asyncio.CancelledError:
            # Cancelled at the run's last deadline: the backend never answered in time.
            # A user retired by a ramp-down is not the backend's fault: not counted.
            if self._ctx.stopping.is_set():
                task.sink.request(clock() - started, "timeout")
            raise
        finally:
            self.busy = False
        task.sink.request(latency, outcome)

    def _refused(self, task: _Task, response: Response) -> None:
        """A 429: close the user's gate for what the backend asked (or the backoff)."""
        retry_after = parse_retry_after(response.retry_after, time.time())
        wait = task.gate.refused(retry_after, self._ctx.clock())
        task.sink.waited(wait)
        detail = "Retry-After honoured" if retry_after is not None else "no Retry-After: backoff"
        task.sink.note("rate_limited", f"HTTP 429 ({detail})")


def _validate(
    response: Response, check: Callable[[bytes | bytearray], bool], max_decompressed: int
) -> str:
    try:
        body = decode_body(response.body, response.encoding, max_decompressed)
    except BodyTooLarge:
        return "too_large"
    except ValueError:
        return "invalid"
    return "ok" if check(body) else "invalid"
