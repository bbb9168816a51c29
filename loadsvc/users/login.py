"""Logins: a token from the backend, kept fresh, for every request a user sends.

A :class:`Login` logs in on first use and again before its token expires (in the idle
time before the request that would find it stale: ``ready(at=...)``), or when the backend
answers 401 to it (``rejected``). Each login is a request of the ``login`` endpoint (kind
http): timed, counted by outcome, judged by the thresholds like any other. A failed login
(a 401, a 5xx, no token in the answer) is counted and backed off (a doubling, jittered
wait; a 429's Retry-After), never retried at once: users wait with it instead of sending
requests that cannot be authorised, so a broken login shows as the login endpoint's errors
and the other endpoints' missing data, both failures of the verdict.

Per user, each user has its own :class:`Login` (its own values fill the body: one account
per user with ``unique`` data); shared, every user of the run holds one, and one login
serves them all. The password and the token never reach a log, a metric, a note or a
summary: notes say ``HTTP 401`` or which path was missing, nothing the backend sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import re
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from loadsvc.config._login import LoginSpec
from loadsvc.users.base import Credential, HttpSink, Target, jittered
from loadsvc.users.http1 import Http1Client, Origin, ProtocolError, Response
from loadsvc.users.http_body import BodyTooLarge, decode_body
from loadsvc.users.ratelimit import parse_retry_after
from loadsvc.users.request import fill_request

__all__ = ["Login", "Logins"]

_MAX_ANSWER = 1024 * 1024  # a login answer is a token and a few fields
_SENDABLE = re.compile(r"[\x21-\x7e]+")  # a token goes in a header or a query as it is


class _Refused(Exception):
    """A login answer without a usable token: ``outcome`` and a note that names no secret."""

    def __init__(self, outcome: str, note: str = "") -> None:
        super().__init__(note)
        self.outcome = outcome
        self.note = note


class Login:
    """One login session: the current token, when to renew it, and the backoff of failures."""

    def __init__(
        self,
        spec: LoginSpec,
        target: Target,
        values: Mapping[str, Any],
        sink: HttpSink,
        stopping: asyncio.Event,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spec = spec
        self._sink = sink
        self._stopping = stopping
        self._rng = rng
        self._clock = clock
        filled = fill_request(
            spec.method, spec.request, "", {**values, **{s.name: s.value for s in spec.secrets}},
            target,
        )  # fmt: skip
        origin = Origin.from_url(target.base_url, target.tls)
        self._data = filled.encode(origin)  # the request carries the password: never shown
        self._client = Http1Client(origin, clock, _MAX_ANSWER)
        self._credential: Credential | None = None
        self._version = 0
        self._renew_at = math.inf  # when the token is due for renewal (user's clock)
        self._expires_at = math.inf
        # How long the last token was fresh from its login's start (not known yet: as if
        # for ever, so the first login happens at once).
        self._fresh_span = math.inf
        self._open_at = -math.inf  # no login attempt before this (after failures)
        self._failures = 0  # in a row
        self._lock = asyncio.Lock()
        self.logins = 0  # successful ones, for tests and curiosity

    async def ready(self, at: float | None = None) -> Credential | None:
        """A token still fresh at ``at`` (None: now); logs in when due, waits out the backoff
        of failed logins (an old token still valid meanwhile is used). None once stopping.

        A token that lives shorter than the time until ``at`` is renewed as late as it can
        be and still be fresh then (the wait happens here, outside the lock), never in a
        loop of logins through the idle time; one the backend makes stale at once is used
        as it is (one login per call, at most two for the first).
        """
        while True:
            credential = self._credential
            if credential is not None and self._fresh(at):
                return credential
            async with self._lock:  # one login at a time; the others take its token
                credential, later = await self._obtain(at)
            if later is None:
                return credential
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), later - self._clock())
            if self._stopping.is_set():
                return None

    async def _obtain(self, at: float | None) -> tuple[Credential | None, float | None]:
        """(the token to use, None) or (None, when to try again: a login now would be
        stale by ``at``); under the lock."""
        renewed = False
        while not self._stopping.is_set():
            credential = self._credential
            if credential is not None and self._fresh(at):
                return credential, None
            now = self._clock()
            # When a login, to be fresh at ``at``, must happen no earlier than.
            due = -math.inf if at is None else at - self._fresh_span
            if renewed and credential is not None:
                # Stale before ``at`` as soon as issued: renew later, or use it as it is.
                return (None, due) if due > now else (credential, None)
            if now >= self._open_at:
                if due > now:
                    return None, due  # renewed now, it would be stale by ``at``
                logins = self.logins
                await self._login()
                renewed = self.logins > logins
                continue
            if credential is not None and now < self._expires_at:
                return credential, None  # renewal is backing off; the old token still works
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._open_at - now)
        return None, None

    def rejected(self, credential: Credential) -> None:
        """The backend answered 401 to ``credential``: drop it, unless already renewed."""
        if self._credential is not None and credential.version == self._credential.version:
            self._credential = None

    def close(self) -> None:
        """Close the login's connection."""
        self._client.close()

    def _fresh(self, at: float | None) -> bool:
        when = self._clock() if at is None else max(at, self._clock())
        return when < self._renew_at

    async def _login(self) -> None:
        sink = self._sink
        started = self._clock()
        latency: float | None = None
        try:
            response = await self._client.request(
                self._data, self._spec.method, True, self._spec.timeout_s
            )
            latency = response.arrived - started
            sink.arrival_clock(response.arrival_clock)
            if response.status == 429:
                latency = None
                retry_after = parse_retry_after(response.retry_after, time.time())
                sink.waited(self._failed(retry_after))
                sink.request(None, "rate_limited")
                return
            self._accept(response, started)
            outcome = "ok"
        except _Refused as exc:
            outcome = exc.outcome
            if exc.note:
                sink.note(outcome, exc.note)
        except TimeoutError:
            outcome, latency = "timeout", self._clock() - started
        except BodyTooLarge:
            outcome = "too_large"
        except ProtocolError:  # before OSError: it is a ConnectionError
            outcome = "protocol_error"
        except ssl.SSLError:
            outcome = "tls"
        except OSError:
            outcome = "connection_error"
        except asyncio.CancelledError:
            if self._stopping.is_set():
                sink.request(self._clock() - started, "timeout")
            raise
        if outcome != "ok":
            self._failed(None)
        sink.request(latency, outcome)

    def _accept(self, response: Response, started: float) -> None:
        """Take the token (and its lifetime) from a login answer, or raise _Refused."""
        spec = self._spec
        if response.status not in spec.expect_status:
            raise _Refused("http_error", f"login: HTTP {response.status}")
        try:
            doc = msgspec.json.decode(decode_body(response.body, response.encoding, _MAX_ANSWER))
        except (ValueError, msgspec.DecodeError, RecursionError):  # deep nesting too
            raise _Refused("invalid", "login: the answer is not JSON") from None
        token = _at_path(doc, spec.token_path)
        if isinstance(token, int | float) and not isinstance(token, bool):
            token = str(token)
        if not isinstance(token, str) or not _SENDABLE.fullmatch(token):
            where = ".".join(spec.token_path)
            raise _Refused("invalid", f"login: no usable token at {where}")
        lifetime = spec.lifetime_s
        if spec.expires_in_path is not None:
            lifetime = _seconds(_at_path(doc, spec.expires_in_path))
            if lifetime is None:
                where = ".".join(spec.expires_in_path)
                raise _Refused("invalid", f"login: no lifetime in seconds at {where}")
        self._version += 1
        if spec.query is not None:
            self._credential = Credential(query=((spec.query, token),), version=self._version)
        else:
            assert spec.header is not None
            header = ((spec.header, spec.prefix + token),)
            self._credential = Credential(headers=header, version=self._version)
        # From the send: the backend's clock started the lifetime no earlier than that.
        if lifetime is None:
            self._renew_at = self._expires_at = math.inf
        else:
            self._expires_at = started + lifetime
            self._renew_at = started + max(lifetime - spec.renew_before_s, lifetime / 2)
        self._fresh_span = self._renew_at - started
        self._failures = 0
        self._open_at = -math.inf
        self.logins += 1

    def _failed(self, retry_after: float | None) -> float:
        """Back off (the wait is returned): the Retry-After of a 429, or a doubling jittered
        wait, capped."""
        spec = self._spec
        self._failures += 1
        if retry_after is not None:
            wait = min(retry_after, spec.max_backoff_s)
        else:
            window = spec.backoff_s * 2 ** min(self._failures - 1, 30)
            wait = jittered(min(window, spec.max_backoff_s), self._rng)
        self._open_at = self._clock() + wait
        return wait


def _at_path(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _seconds(value: Any) -> float | None:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(value)
    return None


class Logins:
    """The logins of one run: a user's own (``per: user``) or the one they share."""

    def __init__(
        self,
        spec: LoginSpec,
        target: Target,
        sink: HttpSink,
        stopping: asyncio.Event,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
        scenario: str = "",
    ) -> None:
        self._make = functools.partial(
            Login, spec, target, sink=sink, stopping=stopping, rng=rng, clock=clock
        )
        self._shared = self._make({"scenario": scenario}) if spec.per == "shared" else None

    def for_user(self, values: Mapping[str, Any]) -> tuple[Login, bool]:
        """The login a user with ``values`` uses, and whether it is its own (to close)."""
        if self._shared is not None:
            return self._shared, False
        return self._make(values), True

    def close(self) -> None:
        """Close the shared login's connection (a user's own closes with the user)."""
        if self._shared is not None:
            self._shared.close()
