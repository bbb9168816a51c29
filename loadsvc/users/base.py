"""What every virtual user is given: the target, a stop signal, a clock, a random source,
and the sinks it reports results to.

The sinks are protocols: users depend on them, never on the recorder that
implements them (:mod:`loadsvc.recorder`), so nothing under ``users/`` sees Prometheus.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from loadsvc.config.spec import EndpointRef, StallThreshold


@dataclass(frozen=True)
class Target:
    """The backend under load: its base URL and the headers every request carries.

    ``headers`` may hold a bearer token; it is never logged (``__repr__`` hides it).
    ``tls`` is the one client TLS context of https/wss connections (see
    :mod:`loadsvc.tls`); None means a default verifying context.
    """

    base_url: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def http_url(self, path: str) -> str:
        """The absolute URL of a REST path."""
        return self.base_url.rstrip("/") + path

    def ws_url(self, path: str) -> str:
        """The absolute ws:// or wss:// URL of a WS path."""
        parts = urlsplit(self.base_url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        base = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        return base + path

    def header_dict(self) -> dict[str, str]:
        """The headers as a dict (for the client libraries)."""
        return dict(self.headers)


@dataclass
class UserContext:
    """Shared by the users of one run (each holds a copy with its own ``values``)."""

    scenario: str
    target: Target
    stopping: asyncio.Event
    started_at: float  # the run's start on ``clock``; cycles are aligned to it
    clock: Callable[[], float] = time.monotonic
    # This user's own values (a row of the scenario's ``data`` plus ``user`` and
    # ``scenario``) for the ``${name}`` templates of what it sends: each user gets a copy of
    # the run's context with its values (see :mod:`loadsvc.feeders`).
    values: Mapping[str, Any] = field(default_factory=dict)
    # The scenario's login as this user sees it (None: the scenario has no ``login``): its own
    # or the run's shared one (see :mod:`loadsvc.users.login`).
    auth: Authenticator | None = None


@dataclass(frozen=True)
class Credential:
    """A login's token as a user sends it: headers to add, or query parameters.

    ``version`` tells one token from the next (a 401 names the token it rejected). The
    values are secrets: ``repr`` hides them, and nothing may log, count or show them.
    """

    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    query: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    version: int = 0

    def url(self, url: str) -> str:
        """``url`` with the token's query parameters added (for a WS upgrade, say)."""
        if not self.query:
            return url
        return url + ("&" if "?" in url else "?") + urlencode(self.query)

    def header_names(self) -> frozenset[str]:
        """The (lower-case) names of the headers the token replaces in a request."""
        return frozenset(name.lower() for name, _ in self.headers)


class Authenticator(Protocol):
    """A user's way to a current token (:class:`loadsvc.users.login.Login`).

    Example, in a user about to send (a WS user adds ``credential.headers`` to its upgrade
    and opens ``credential.url(url)``)::

        credential = await ctx.auth.ready()
        if credential is None:
            return  # the run is stopping
        ...send with credential...
        if status == 401:
            ctx.auth.rejected(credential)  # the next ready() logs in again
    """

    async def ready(self, at: float | None = None) -> Credential | None:
        """A token still fresh at ``at`` (on the user's clock; None: now), logging in (again)
        when there is none; waits out the backoff of failed logins. None once stopping."""

    def rejected(self, credential: Credential) -> None:
        """The backend answered 401 to ``credential``: forget it, unless already renewed."""


class VirtualUser(Protocol):
    """One simulated client. ``busy`` is True while it is inside a unit of work that
    a graceful stop should let finish (a request in flight, a reconnect)."""

    busy: bool

    async def run(self) -> None:
        """Act until cancelled or until ``stopping`` is set between units of work."""


class HttpSink(Protocol):
    """Where a REST user reports each request of one endpoint."""

    def request(self, latency: float | None, outcome: str) -> None:
        """One request ended with ``outcome``; ``latency`` is None when no response came."""

    def arrival_clock(self, clock: str) -> None:
        """A response's arrival was timed by ``clock`` (``kernel`` or ``loop``)."""

    def note(self, reason: str, detail: str) -> None:
        """Keep what a person needs to act on a failure (bounded; never a label or a metric)."""

    def waited(self, seconds: float) -> None:
        """A 429 made the user leave the endpoint alone for ``seconds`` (one wait)."""


class WsSink(Protocol):
    """Where a WS user reports frames, connects and failures of one endpoint."""

    # When a silent open connection is stalled: the users watch for it and report ``stalled``.
    stall: StallThreshold

    def frame(
        self,
        outcome: str,
        latency: float | None,
        interval: float | None,
        missed: int,
        offset: float | None = None,
    ) -> None:
        """One data frame received: its outcome, delivery latency, gap since the previous,
        missed sequence numbers, and arrival minus publish stamp (``offset``, when stamped)."""

    def missed(self, n: int) -> None:
        """Sequence numbers found missing when a connection ended."""

    def status(self) -> None:
        """A status frame (heartbeat): counted on its own, neither validated nor timed."""

    def duplicate(self) -> None:
        """A frame whose sequence number was already delivered on the connection: counted
        apart, never as delivered, neither validated nor timed."""

    def stalled(self) -> None:
        """A connection (or a user without one) silent past ``stall`` (once per silence)."""

    def stall_ended(self) -> None:
        """The connection last reported ``stalled`` delivered again, or ended."""

    def connected(self, connect_s: float) -> None:
        """A connection opened after ``connect_s``."""

    def arrival_clock(self, clock: str) -> None:
        """The connection just opened times its frames by ``clock`` (``kernel`` or ``loop``)."""

    def reconnected(self, reconnect_s: float) -> None:
        """The time from losing or closing a connection to the next one open."""

    def disconnected(self) -> None:
        """An open connection closed (for any reason)."""

    def failed(self, reason: str) -> None:
        """A connection attempt failed, or an open connection was lost."""

    def note(self, reason: str, detail: str) -> None:
        """Keep what a person needs to act on a failure (bounded; never a label or a metric)."""

    def sequence_anomaly(self, kind: str, n: int = 1) -> None:
        """Frames whose sequence number was not the next one (duplicate, reordered, reset) or
        was missing (unsequenced)."""


class EndpointSinks(Protocol):
    """The sinks of one run, one per endpoint; a user group resolves its own once."""

    def http_sink(self, ref: EndpointRef) -> HttpSink:
        """The sink of a REST endpoint."""

    def ws_sink(self, ref: EndpointRef) -> WsSink:
        """The sink of a WS endpoint."""


def jittered(delay: float, rng: random.Random) -> float:
    """Full jitter: uniform in [delay/2, delay], so a crowd does not retry in lockstep."""
    return delay * (0.5 + rng.random() / 2)
