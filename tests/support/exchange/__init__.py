"""A second backend for loadsvc to be proven against: an exchange unlike the reference target.

Where the reference target (`loadsvc/target/`) pushes JSON to everyone, numbers one sequence
per connection, stamps `published_at` as a top-level float and asks no credentials, this
exchange wants a login, a subscription, heartbeat answers and polite REST clients, and sends
nested msgpack frames with RFC 3339 stamps and a sequence per symbol. `docs/exchange-protocol.md`
is the long form of the wire protocol below.

Wire protocol (everything on 127.0.0.1):

- `POST /auth/login` `{"username", "password"}` -> 200
  `{"data": {"access_token", "token_type": "Bearer", "expires_in": S}}`; bad credentials 401,
  a malformed body 400. Tokens expire after `token_ttl_s`.
- `GET /v2/quotes?symbols=VCB,FPT` and `POST /v2/orders` `{"sym", "side", "qty", "px"}` want
  `Authorization: Bearer <token>`: missing, unknown or expired -> 401 `{"error": "token ..."}`.
  Orders answer 201 `{"data": {"order_id", ...}}`, or 400 with every error in `details`.
  Beyond `rate_limit` requests per token per `rate_window_s`: 429 with `Retry-After: N`
  (whole seconds); asking again before N seconds passed is 429 again and counted as hammering.
- `GET /stream?token=...` (or the Authorization header): a bad token is refused with 401
  (or, with `ws_auth_close`, accepted and closed with 4401). Query options: `encoding=json`
  (text frames instead of msgpack binary), `drop_every=N`, `delay_ms=D` (faults).
  Nothing is sent until the client sends `{"op": "subscribe", "symbols": [...], "id": N}`;
  after `ack_delay_s` the server answers `{"op": "ack", "id": N}` and then streams trades of
  those symbols only: `{"meta": {"ts": "2026-12-03T14:00:00.123456Z", "kind": "trade"},
  "d": {"sym": "VCB", "seq": 17, "px": 91.2, "qty": 300}}`, `seq` counting per symbol.
  Every `heartbeat_s` it sends `{"op": "ping", "id": K}`; without `{"op": "pong", "id": K}`
  within `pong_deadline_s` it closes with 4408, as it does a stream not subscribed within
  `subscribe_timeout_s`. Bad client messages get `{"op": "error", "id", "error"}`.
- `GET /_truth[?frames=1]` (`DELETE` resets the window): counters and the ground truth of
  every frame written or dropped (see `truth.py`).

In a test: `async with running_exchange(ExchangeSettings(token_ttl_s=5)) as ex:`; as a
process: `python -m tests.support.exchange --port N [--token-ttl-s 5 ...]`.
"""

from tests.support.exchange.app import (
    EXCHANGE_KEY,
    Exchange,
    RunningExchange,
    build_app,
    running_exchange,
)
from tests.support.exchange.settings import ExchangeSettings
from tests.support.exchange.truth import FrameWritten, GroundTruth

__all__ = [
    "EXCHANGE_KEY",
    "Exchange",
    "ExchangeSettings",
    "FrameWritten",
    "GroundTruth",
    "RunningExchange",
    "build_app",
    "running_exchange",
]
