"""Tunables of the exchange backend, each declared once: its type, default and help text.

The process's command line is derived from these fields (`--token-ttl-s 5`), so an option
never exists in one place and not the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

ENCODINGS = ("msgpack", "json")
DEFAULT_SYMBOLS = ("VCB", "VNM", "FPT", "HPG", "MWG", "TCB")


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class ExchangeSettings:
    """How the exchange authenticates, paces, heartbeats, limits and misbehaves."""

    token_ttl_s: float = _opt(300.0, "seconds a login token stays valid")
    tick_s: float = _opt(0.05, "interval between market ticks (each updates some symbols)")
    update_probability: float = _opt(0.6, "chance that a symbol trades on a tick")
    ack_delay_s: float = _opt(0.1, "delay before a subscribe is acknowledged")
    subscribe_timeout_s: float = _opt(10.0, "close (4408) a stream not subscribed by then")
    heartbeat_s: float = _opt(5.0, "interval between app-level pings on a subscribed stream")
    pong_deadline_s: float = _opt(2.0, "close (4408) when a ping is not answered by then")
    encoding: str = _opt("msgpack", "frame encoding unless ?encoding= says otherwise")
    rate_limit: int = _opt(0, "REST requests per token per rate window (0: no limit)")
    rate_window_s: float = _opt(1.0, "length of the rate-limit window")
    drop_every: int = _opt(0, "default ?drop_every: skip every Nth frame of a symbol")
    delay_ms: float = _opt(0.0, "default ?delay_ms: hold every frame this long before writing")
    ws_auth_close: bool = _opt(False, "accept a bad-token upgrade, then close 4401 (not 401)")
    queue_size: int = _opt(10_000, "frames queued per connection before the oldest is dropped")
    seed: int = _opt(21, "seed of the price walk and of which symbols trade on a tick")
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    users: tuple[tuple[str, str], ...] = (("alice", "alice-pw"), ("bob", "bob-pw"))
    """(username, password) pairs that may log in; the process reads EXCHANGE_USERS."""

    def __post_init__(self) -> None:
        errors = [
            f"{f.name} must be > 0, got {getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name.endswith("_s") and not getattr(self, f.name) > 0
        ]
        for name in ("rate_limit", "drop_every", "delay_ms"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.drop_every == 1:
            errors.append("drop_every must not be 1 (that drops every frame)")
        if self.encoding not in ENCODINGS:
            errors.append(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if not 0 < self.update_probability <= 1:
            errors.append(f"update_probability must be in (0, 1], got {self.update_probability}")
        if self.queue_size < 1 or not self.symbols or not self.users:
            errors.append("queue_size, symbols and users must not be empty")
        if errors:
            raise ValueError("invalid ExchangeSettings: " + "; ".join(errors))

    @property
    def passwords(self) -> dict[str, str]:
        """Username -> password."""
        return dict(self.users)


def cli_options() -> list[tuple[str, type, Any, str]]:
    """(field name, type, default, help) of every option the command line offers."""
    return [
        (f.name, type(f.default), f.default, f.metadata["help"])
        for f in fields(ExchangeSettings)
        if "help" in f.metadata
    ]
