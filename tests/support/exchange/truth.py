"""Ground truth of the exchange: every frame written or dropped, per connection and symbol.

The stream records each data frame once its bytes were handed to the socket: its symbol,
sequence number, publish stamp (the µs integer its RFC 3339 `meta.ts` was printed from, so
the stamp a client parses is exactly the one recorded) and the wall-clock write time. Frames
skipped on purpose (the `drop_every` fault) and frames lost to a full send queue are recorded
apart, so a test can check a client's latency quantiles, gap counts and drops against them.
`reset()` starts a new window; connections stay, their records empty.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tests.support.exchange.market import rfc3339

QUANTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99, "p999_ms": 0.999}


class FrameWritten(NamedTuple):
    """One data frame as written to one connection."""

    seq: int
    ts: str
    published_at: float
    written_at: float

    @property
    def latency_ms(self) -> float:
        """Write time minus publish stamp, in ms."""
        return (self.written_at - self.published_at) * 1000.0


@dataclass
class SymbolTruth:
    """What one connection was sent of one symbol (compact arrays: soaks write many frames)."""

    seqs: array[int] = field(default_factory=lambda: array("q"))
    published_us: array[int] = field(default_factory=lambda: array("q"))
    written_at: array[float] = field(default_factory=lambda: array("d"))
    dropped: list[int] = field(default_factory=list)  # skipped on purpose (drop_every)
    overflowed: list[int] = field(default_factory=list)  # pushed out of a full send queue

    def latencies_ms(self) -> list[float]:
        """Write time minus publish stamp of every frame written, in ms."""
        return [
            (w - p / 1e6) * 1000.0 for p, w in zip(self.published_us, self.written_at, strict=True)
        ]

    def gaps(self) -> int:
        """Sequence numbers missing between the first and last written: what a client can see."""
        if not self.seqs:
            return 0
        return self.seqs[-1] - self.seqs[0] + 1 - len(set(self.seqs))

    def to_json(self) -> dict[str, Any]:
        """Counts, first and last seq, gaps, and the seqs dropped or overflowed."""
        return {
            "written": len(self.seqs),
            "first_seq": self.seqs[0] if self.seqs else None,
            "last_seq": self.seqs[-1] if self.seqs else None,
            "gaps": self.gaps(),
            "dropped": list(self.dropped),
            "overflowed": list(self.overflowed),
        }


@dataclass
class ConnectionTruth:
    """One WS connection: who, how it was served, what it was sent, why it ended."""

    id: int
    user: str
    encoding: str
    faults: dict[str, float]
    symbols: dict[str, SymbolTruth] = field(default_factory=dict)
    closed: str | None = None  # why the server ended it, if it did

    def symbol(self, sym: str) -> SymbolTruth:
        """The record of `sym`, created on first use."""
        if sym not in self.symbols:
            self.symbols[sym] = SymbolTruth()
        return self.symbols[sym]

    def frames(self, sym: str) -> list[FrameWritten]:
        """Every frame of `sym` written to this connection, in order."""
        record = self.symbols.get(sym, SymbolTruth())
        return [
            FrameWritten(seq, rfc3339(us), us / 1e6, written)
            for seq, us, written in zip(
                record.seqs, record.published_us, record.written_at, strict=True
            )
        ]


class GroundTruth:
    """Every connection's record since the last reset."""

    def __init__(self) -> None:
        self.connections: dict[int, ConnectionTruth] = {}

    def open(self, conn_id: int, user: str, encoding: str, faults: dict[str, float]) -> None:
        """Start the record of a connection that passed authentication."""
        self.connections[conn_id] = ConnectionTruth(conn_id, user, encoding, faults)

    def written(self, conn_id: int, sym: str, seq: int, published_us: int, at: float) -> None:
        """Record a data frame whose bytes were handed to the connection's socket at `at`."""
        record = self.connections[conn_id].symbol(sym)
        record.seqs.append(seq)
        record.published_us.append(published_us)
        record.written_at.append(at)

    def dropped(self, conn_id: int, sym: str, seq: int, overflow: bool = False) -> None:
        """Record a data frame this connection will never get (a fault, or a full queue)."""
        record = self.connections[conn_id].symbol(sym)
        (record.overflowed if overflow else record.dropped).append(seq)

    def reset(self) -> None:
        """Forget every frame recorded so far; open connections keep being recorded."""
        for conn in self.connections.values():
            conn.symbols.clear()

    def latency_ms(self) -> dict[str, float | int | None]:
        """Count, exact nearest-rank p50/p90/p99/p999 and max of write minus stamp, in ms."""
        values = sorted(
            ms
            for c in self.connections.values()
            for s in c.symbols.values()
            for ms in s.latencies_ms()
        )
        out: dict[str, float | int | None] = {"count": len(values)}
        for key, q in QUANTILES.items():
            rank = max(1, math.ceil(q * len(values) - 1e-9))
            out[key] = round(values[rank - 1], 3) if values else None
        out["max_ms"] = round(values[-1], 3) if values else None
        return out

    def to_json(self, frames: bool = False) -> dict[str, Any]:
        """Latency quantiles and per-connection, per-symbol records; with `frames`, each
        frame as `[seq, ts, written_at]`."""
        conns = []
        for c in self.connections.values():
            per_symbol = {}
            for sym, record in c.symbols.items():
                per_symbol[sym] = record.to_json()
                if frames:
                    per_symbol[sym]["frames"] = [[f.seq, f.ts, f.written_at] for f in c.frames(sym)]
            conns.append(
                {"id": c.id, "user": c.user, "encoding": c.encoding, "faults": c.faults}
                | {"closed": c.closed, "symbols": per_symbol}
            )
        return {"latency_ms": self.latency_ms(), "connections": conns}
