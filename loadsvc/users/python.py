"""User kinds written in Python (``kind: python``): the base class and its measuring helpers.

A custom user is measured as truthfully as a built-in one: it reports to the same
sinks (so its endpoints get the same metrics, verdict, live judgement and
dashboards), runs on the run's clock and stop signal, and its helpers time the
way the built-in users do: :meth:`PythonUser.request` over the keep-alive
HTTP/1.1 client that stamps each response's arrival (from the *intended* start
when you pace with :meth:`PythonUser.pace`, so a stalled backend cannot hide),
and :meth:`PythonUser.stream` over the kernel-stamped WebSocket transport, each
frame judged (publish stamp, sequence, required keys) as its bytes arrive.

Example (``examples/custom_user.py`` is a complete one)::

    from loadsvc.users.python import PythonUser, http, ws

    class SnapshotThenStream(PythonUser):
        '''Load the snapshot, then watch the stream for a while, as a dashboard tab does.'''

        endpoints = (http("/api/market/snapshot"), ws("/ws/market", sequenced=True))

        async def run(self) -> None:
            async for started in self.pace(float(self.options.get("every_s", 10))):
                await self.request("/api/market/snapshot", "/api/market/snapshot", started=started)
                async with self.stream("/ws/market", "/ws/market") as conn:
                    if conn is not None:
                        await self.sleep(5.0)  # frames are judged meanwhile

and in the configuration::

    users:
      - {kind: python, class: "custom_user:SnapshotThenStream", options: {every_s: 10}}
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, ClassVar, cast

import structlog
from websockets.exceptions import ConnectionClosedOK

from loadsvc.config.kinds import EndpointRef, WsMessageSpec
from loadsvc.tls import describe_tls_error
from loadsvc.users.arrival import clock_of
from loadsvc.users.base import HttpSink, UserContext, WsSink
from loadsvc.users.frames import FrameReader
from loadsvc.users.http1 import Http1Client, Origin, ProtocolError, Response, request_bytes
from loadsvc.users.http_body import BodyTooLarge
from loadsvc.users.ws import classify_connect_error
from loadsvc.users.wsconn import TimedConnection, stamped_connect

__all__ = ["ManagedUser", "PythonUser", "http", "ws"]

_log = structlog.get_logger("loadsvc.users.python")
# How long a cancelled user's ``run`` may take to end before it is abandoned.
STOP_GRACE_S = 2.0
# Frames as the reference target stamps them (published_at in s, seq, status frames skipped).
_DEFAULT_MESSAGE = WsMessageSpec()


def http(endpoint: str, method: str = "GET") -> EndpointRef:
    """A REST endpoint a Python user measures: its label (a route, or any name) and method."""
    return EndpointRef(endpoint, "http", method.upper())


def ws(endpoint: str, *, sequenced: bool = False) -> EndpointRef:
    """A WS endpoint a Python user measures; ``sequenced``: its frames carry sequence numbers
    (so missed frames are counted and judged)."""
    return EndpointRef(endpoint, "ws", sequenced=sequenced)


class PythonUser:
    """Base of a user kind written in Python: subclass it, declare ``endpoints``, write ``run``.

    ``run`` acts until cancelled, or until ``self.ctx.stopping`` is set between
    units of work (:meth:`pace` and :meth:`sleep` stop by themselves); set
    ``busy`` around work a graceful stop should let finish (the helpers do).
    ``options`` is the group's ``options`` mapping from the configuration.
    """

    endpoints: ClassVar[tuple[EndpointRef, ...]] = ()

    def __init__(
        self,
        ctx: UserContext,
        sinks: Mapping[tuple[str, str, str], Any],
        rng: random.Random,
        options: Mapping[str, Any],
    ) -> None:
        self.busy = False
        self.ctx = ctx
        self.rng = rng
        self.options = options
        self._sinks = sinks
        self._origin = Origin.from_url(ctx.target.base_url, ctx.target.tls)
        self._client: Http1Client | None = None
        self._requests: dict[tuple[str, str], bytes] = {}

    async def run(self) -> None:
        """The user's conversation with the backend (override it)."""
        raise NotImplementedError

    # -- sinks -------------------------------------------------------------------

    def http_sink(self, endpoint: str, method: str = "GET") -> HttpSink:
        """The sink of a declared REST endpoint (KeyError if it is not in ``endpoints``)."""
        sink: HttpSink = self._sinks[("http", endpoint, method.upper())]
        return sink

    def ws_sink(self, endpoint: str) -> WsSink:
        """The sink of a declared WS endpoint (KeyError if it is not in ``endpoints``)."""
        sink: WsSink = self._sinks[("ws", endpoint, "")]
        return sink

    # -- time --------------------------------------------------------------------

    async def pace(self, interval_s: float) -> AsyncIterator[float]:
        """Yield the intended start of each unit of work, one every ``interval_s`` from a random
        phase, until the run stops: time from it (``request(started=...)``) and a late start
        is counted as latency, not hidden (coordinated omission)."""
        clock, stopping = self.ctx.clock, self.ctx.stopping
        intended = clock() + self.rng.random() * interval_s
        while not stopping.is_set():
            delay = intended - clock()
            if delay > 0:
                await self.sleep(delay)
                if stopping.is_set():
                    return
            yield intended
            intended += interval_s

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the run stops meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ctx.stopping.wait(), max(seconds, 0.0))

    # -- REST --------------------------------------------------------------------

    async def request(
        self,
        endpoint: str,
        path: str,
        *,
        method: str = "GET",
        started: float | None = None,
        expect: tuple[int, ...] = (200,),
        keep_body: bool = False,
        timeout_s: float = 10.0,
        max_body: int = 10 * 1024 * 1024,
    ) -> Response | None:
        """One timed request of ``method path``, reported to ``endpoint``'s sink with its
        outcome (as a ``rest`` user's); latency from ``started`` (the run's clock; default:
        now). The response, or None when none came (the outcome says why)."""
        method = method.upper()
        sink = self.http_sink(endpoint, method)
        if self._client is None:
            self._client = Http1Client(self._origin, self.ctx.clock, max_body)
        data = self._requests.get((method, path))
        if data is None:
            url = self.ctx.target.http_url(path)
            data = self._requests[(method, path)] = request_bytes(
                method, url, self._origin, self.ctx.target.headers
            )
        clock = self.ctx.clock
        start = clock() if started is None else started
        latency: float | None = None
        response: Response | None = None
        self.busy = True
        try:
            response = await self._client.request(data, method, keep_body, timeout_s)
            latency = response.arrived - start
            sink.arrival_clock(response.arrival_clock)
            outcome = "ok" if response.status in expect else "http_error"
            if outcome != "ok":
                sink.note("http_error", f"HTTP {response.status}")
        except TimeoutError:
            outcome, latency = "timeout", clock() - start
        except BodyTooLarge:
            outcome = "too_large"
        except ProtocolError:  # before OSError: it is a ConnectionError
            outcome = "protocol_error"
        except ssl.SSLError as exc:
            outcome = "tls"
            sink.note("tls", describe_tls_error(exc))
        except OSError:
            outcome = "connection_error"
        finally:
            self.busy = False
        sink.request(latency, outcome)
        return response

    # -- WS ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def stream(
        self,
        endpoint: str,
        path: str,
        *,
        message: WsMessageSpec = _DEFAULT_MESSAGE,
        connect_timeout_s: float = 10.0,
        max_message: int = 1024 * 1024,
    ) -> AsyncIterator[TimedConnection | None]:
        """Open a WS connection to ``path`` over the kernel-stamped transport, as a built-in
        WS user does: connect time, failures (by reason) and every data frame (judged by
        ``message``: stamp, sequence, required keys, as it arrives) go to ``endpoint``'s
        sink. Yields the open connection (``await conn.send(...)`` to talk to the server),
        or None when it could not open (counted); closes it on leaving the block."""
        sink = self.ws_sink(endpoint)
        reader = FrameReader(message, sink)
        reader.new_connection()
        target = self.ctx.target
        url = target.ws_url(path)
        tls = (target.tls or ssl.create_default_context()) if url.startswith("wss:") else None
        clock = self.ctx.clock
        t0 = clock()
        self.busy = True
        try:
            conn = await stamped_connect(
                url,
                additional_headers=target.header_dict() or None,
                open_timeout=connect_timeout_s,
                compression=None,
                proxy=None,
                max_size=max_message,
                user_agent_header="loadsvc",
                ssl=tls,
                create_connection=TimedConnection.factory(reader.feed),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # counted by reason, never raised
            reason, detail = classify_connect_error(exc)
            sink.failed(reason)
            if detail is not None:
                sink.note(reason, detail)
            conn = None
        finally:
            self.busy = False
        if conn is None:
            yield None
            return
        assert isinstance(conn, TimedConnection)
        sink.connected(clock() - t0)
        sink.arrival_clock(clock_of(conn.transport))
        try:
            yield conn
        finally:
            lost = conn.protocol.close_exc if conn.connection_lost_waiter.done() else None
            reader.end_connection()
            sink.disconnected()
            if lost is not None:  # the server ended it before we did
                sink.failed("closed" if isinstance(lost, ConnectionClosedOK) else "abnormal_close")
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close())

    def close(self) -> None:
        """Close the user's HTTP connection (the runtime calls it when the user ends)."""
        if self._client is not None:
            self._client.close()
            self._client = None


class ManagedUser:
    """A Python user as the runner sees it: built in its own task, its ``run``, then its
    connections closed.

    The class is the user's code, so the runner is kept safe from it: a class that raises
    in ``__init__`` ends this user only (the runner logs it and replaces it, as any user
    that ends), not the run; and a ``run`` that swallows its cancellation cannot hold a
    run open: after ``STOP_GRACE_S`` its coroutine is closed (logged), so the run ends.
    """

    def __init__(self, make: Callable[[], PythonUser]) -> None:
        self._make = make
        self._user: PythonUser | None = None

    @property
    def busy(self) -> bool:
        """Whether the user is inside work a graceful stop should let finish."""
        return self._user is not None and self._user.busy

    @busy.setter
    def busy(self, value: bool) -> None:
        if self._user is not None:
            self._user.busy = value

    async def run(self) -> None:
        """Run the user's conversation; close what it opened however it ends."""
        user = self._user = self._make()
        inner = asyncio.ensure_future(self._conversation(user))
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            if not inner.done():
                await self._stop(inner, type(user).__qualname__)
            raise

    @staticmethod
    async def _conversation(user: PythonUser) -> None:
        try:
            await user.run()
        finally:
            user.close()

    @staticmethod
    async def _stop(inner: asyncio.Task[None], name: str) -> None:
        """Cancel the user's run; give it ``STOP_GRACE_S`` to end, then close it."""
        deadline = asyncio.get_running_loop().time() + STOP_GRACE_S
        while not inner.done():
            inner.cancel()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                # It caught CancelledError: end its coroutine with GeneratorExit instead
                # (its task then fails at once). One that swallows that too (a bare
                # ``except:`` around an await) cannot be ended from outside; it is left.
                _log.error("python user ignores cancellation; closed", user_class=name)
                inner.add_done_callback(_consume)
                with contextlib.suppress(RuntimeError):
                    cast(Coroutine[Any, Any, None], inner.get_coro()).close()
                inner.cancel()
                return
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(inner), min(left, 0.1))


def _consume(task: asyncio.Future[None]) -> None:
    """Retrieve a closed run's end (so asyncio does not log it as never retrieved)."""
    if not task.cancelled():
        task.exception()
