"""Who may call the exchange and how often: expiring login tokens and a per-token rate limit.

Both take the clock as an argument, so their time rules are tested without waiting.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]

TOKEN_OK, TOKEN_MISSING, TOKEN_UNKNOWN, TOKEN_EXPIRED = "ok", "missing", "unknown", "expired"


class TokenBook:
    """Issues bearer tokens at login and judges the tokens that requests present."""

    def __init__(self, passwords: dict[str, str], ttl_s: float, clock: Clock = time.monotonic):
        self._passwords = passwords
        self._ttl_s = ttl_s
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (user, expires at)
        self.logins = 0
        self.login_rejections = 0
        self.rejections: Counter[str] = Counter()  # reason -> requests refused for it

    def login(self, username: str, password: str) -> str | None:
        """A fresh token for good credentials (counted), None for bad ones (counted)."""
        expected = self._passwords.get(username)
        if expected is None or not secrets.compare_digest(expected, password):
            self.login_rejections += 1
            return None
        self.logins += 1
        token = secrets.token_urlsafe(24)
        self._tokens[token] = (username, self._clock() + self._ttl_s)
        return token

    def issued(self) -> list[str]:
        """Every token issued so far (for tests that look for a leaked one)."""
        return list(self._tokens)

    def check(self, token: str | None) -> tuple[str, str | None]:
        """(verdict, user): `ok` with the user, or `missing`/`unknown`/`expired` (counted)."""
        if not token:
            verdict, user = TOKEN_MISSING, None
        elif token not in self._tokens:
            verdict, user = TOKEN_UNKNOWN, None
        else:
            user, expires_at = self._tokens[token]
            verdict = TOKEN_OK if self._clock() < expires_at else TOKEN_EXPIRED
        if verdict != TOKEN_OK:
            self.rejections[verdict] += 1
        return verdict, user


@dataclass
class _Window:
    started: float
    count: int = 0
    told_until: float = 0.0  # the moment a 429's Retry-After said to come back


class RateLimiter:
    """At most `limit` requests per token per window; beyond, a Retry-After in whole seconds.

    A request that arrives before the Retry-After it was given has passed is refused again
    and counted as hammering: an honest client waits.
    """

    def __init__(self, limit: int, window_s: float, clock: Clock = time.monotonic) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self.limited = 0
        self.hammering = 0

    def retry_after(self, token: str) -> int | None:
        """None if the request may proceed, else the seconds to tell the client to wait."""
        if self._limit <= 0:
            return None
        now = self._clock()
        window = self._windows.get(token)
        if window is not None and now < window.told_until:
            self.hammering += 1
            self.limited += 1
            return max(1, math.ceil(window.told_until - now))
        if window is None or now >= window.started + self._window_s:
            window = self._windows[token] = _Window(started=now)
        window.count += 1
        if window.count <= self._limit:
            return None
        self.limited += 1
        # RFC 9110 delay-seconds is a whole number: round up, never tell a client "0".
        wait = max(1, math.ceil(window.started + self._window_s - now))
        window.told_until = now + wait
        return wait
