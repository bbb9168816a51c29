"""Honouring ``429 Too Many Requests``: how long a user leaves the backend alone.

A 429 is the backend refusing load. A user that retries at once turns a rate limit into a
hammering; one that honours ``Retry-After`` is what a well-behaved client does, and what
loadsvc must do to soak a rate-limited backend truthfully. So after a 429 a user sends
nothing more, to that endpoint or any other (a backend may count per token or per client,
not per route), until:

- ``Retry-After`` seconds (``120``) or until its HTTP date (``Wed, 21 Oct 2026 07:28:00
  GMT``), capped at ``max_wait``, plus up to 10 % jitter, so a crowd refused together
  does not come back together (never *less* than asked: the server said when);
- without a usable ``Retry-After``, a backoff: ``backoff`` doubled for each 429 in a row,
  capped at ``max_wait``, jittered over its upper half.

>>> parse_retry_after(b"120", now_wall=0.0)
120.0
>>> parse_retry_after(b"Thu, 01 Jan 1970 00:00:30 GMT", now_wall=10.0)
20.0
>>> parse_retry_after(b"soon", now_wall=0.0) is None
True
>>> parse_retry_after(b"\\xb2", now_wall=0.0) is None  # latin-1 '²': a digit to str.isdigit
True
"""

from __future__ import annotations

import email.utils
import math
import random
import re

from loadsvc.config.kinds.rest import RateLimitSpec

__all__ = ["RateLimitGate", "parse_retry_after"]

_SECONDS = re.compile(r"[0-9]+")  # delay-seconds: ASCII digits only (RFC 9110)
_JITTER = 0.1  # of the wait asked for: spreads a crowd without ever coming back early


def parse_retry_after(value: bytes, now_wall: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date, RFC 9110
    10.2.3); None when absent or unreadable. A date in the past is 0."""
    text = value.decode("latin-1").strip()
    if not text:
        return None
    if _SECONDS.fullmatch(text):  # not str.isdigit(): it takes '²' (0xB2), float() does not
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110: HTTP dates are GMT
        return None
    return max(0.0, when.timestamp() - now_wall)


class RateLimitGate:
    """One user (all its endpoints): when it may ask again after 429s."""

    __slots__ = ("_rng", "_spec", "_streak", "open_at")

    def __init__(self, spec: RateLimitSpec, rng: random.Random) -> None:
        self._spec = spec
        self._rng = rng
        self._streak = 0  # 429s in a row
        self.open_at = -math.inf  # on the user's clock: no request before this

    def refused(self, retry_after: float | None, now: float) -> float:
        """A 429 arrived at ``now``; returns the wait it imposes (and closes the gate for it)."""
        self._streak += 1
        cap = self._spec.max_wait_s
        if retry_after is not None:
            asked = min(retry_after, cap)
            wait = asked + self._rng.random() * _JITTER * asked
        else:
            window = min(cap, self._spec.backoff_s * 2 ** min(self._streak - 1, 30))
            wait = window * (0.5 + self._rng.random() / 2)
        self.open_at = now + wait
        return wait

    def answered(self) -> None:
        """A response that is not a 429: the next refusal's backoff starts over."""
        self._streak = 0
