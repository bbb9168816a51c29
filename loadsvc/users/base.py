"""What every virtual user is given: the target, a stop signal, a clock, a random source."""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit


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
    """Shared by the users of one run."""

    scenario: str
    target: Target
    stopping: asyncio.Event
    started_at: float  # the run's start on ``clock``; cycles are aligned to it
    clock: Callable[[], float] = time.monotonic


class VirtualUser(Protocol):
    """One simulated client. ``busy`` is True while it is inside a unit of work that
    a graceful stop should let finish (a request in flight, a reconnect)."""

    busy: bool

    async def run(self) -> None:
        """Act until cancelled or until ``stopping`` is set between units of work."""


def jittered(delay: float, rng: random.Random) -> float:
    """Full jitter: uniform in [delay/2, delay], so a crowd does not retry in lockstep."""
    return delay * (0.5 + rng.random() / 2)
