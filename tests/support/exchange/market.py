"""The exchange's market: a seeded price walk per symbol, one sequence per symbol, and frames.

On each tick every symbol trades with some probability, so the symbols a connection
subscribed to arrive interleaved and unevenly. A trade's seq counts that symbol's trades
across the whole exchange: a client joining late starts at whatever seq the symbol is at.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson


def rfc3339(us: int) -> str:
    """`us` µs since the epoch as RFC 3339 UTC with six decimals: `2026-12-03T14:00:00.123456Z`."""
    whole = datetime.fromtimestamp(us // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{us % 1_000_000:06d}Z"


ENCODERS: dict[str, Callable[[Any], bytes | str]] = {
    "msgpack": msgpack.packb,
    "json": lambda doc: orjson.dumps(doc).decode(),
}
"""Encoding name -> encoder: bytes go out as binary frames, str as text frames."""


@dataclass
class Trade:
    """One trade of one symbol: the data frame, serialized at most once per encoding."""

    sym: str
    seq: int
    px: float
    qty: int
    published_us: int
    _encoded: dict[str, bytes | str] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The frame: `meta` (RFC 3339 stamp, kind) and `d` (symbol, seq, price, quantity)."""
        return {
            "meta": {"ts": rfc3339(self.published_us), "kind": "trade"},
            "d": {"sym": self.sym, "seq": self.seq, "px": self.px, "qty": self.qty},
        }

    def encoded(self, encoding: str) -> bytes | str:
        """The frame in `encoding`; every connection using it gets the same object."""
        if encoding not in self._encoded:
            self._encoded[encoding] = ENCODERS[encoding](self.document())
        return self._encoded[encoding]


class Market:
    """Prices and per-symbol sequence numbers of the listed symbols."""

    def __init__(self, symbols: Iterable[str], update_probability: float, seed: int) -> None:
        self._rng = random.Random(seed)
        self._p = update_probability
        self.prices = {sym: round(self._rng.uniform(20, 120), 1) for sym in symbols}
        self.seqs = dict.fromkeys(self.prices, 0)

    def tick(self) -> list[Trade]:
        """This tick's trades (possibly none), each stamped now and numbered in its symbol."""
        trades = []
        for sym, px in self.prices.items():
            if self._rng.random() >= self._p:
                continue
            px = self.prices[sym] = round(max(1.0, px + self._rng.choice((-0.1, 0.0, 0.1))), 1)
            self.seqs[sym] += 1
            qty = self._rng.randrange(100, 10_000, 100)
            trades.append(Trade(sym, self.seqs[sym], px, qty, time.time_ns() // 1000))
        return trades

    def quote(self, sym: str) -> dict[str, Any]:
        """The latest price and seq of `sym`, as REST serves it."""
        return {"sym": sym, "px": self.prices[sym], "seq": self.seqs[sym]}
