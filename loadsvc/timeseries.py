"""Bounded time series of what each endpoint did, second by second, for the pictures.

A sampler (:mod:`loadsvc.sampler`) hands one :class:`Interval` per endpoint
per second; :class:`EndpointSeries` keeps it in tiers of growing step, each a
fixed-size ring: every sample for the last hour, 10 s points for a day, 1 min
points for a week, 10 min points for a month. Every tier is built from the
samples themselves (counts summed, gauges averaged over time, latency
histograms merged), so a coarse point's p99 is the p99 of its whole span, not
an average of p99s. Memory is fixed when a series is made; nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from loadsvc.latency import LIVE_BUCKETS, live_bucket_value

Counts = npt.NDArray[np.int64]

# The columns of a point. Counts (requests, errors, missed, connects) are per point (divide
# by span_s for a rate);
# users and connections are time-weighted means; latencies in seconds (NaN: none).
FIELDS = (
    "span_s",
    "users",
    "requests",
    "errors",
    "missed",
    "connections",
    "connects",
    "p50_s",
    "p95_s",
    "p99_s",
    "reconnect_p95_s",
)
_COL = {name: i for i, name in enumerate(FIELDS)}
_BUCKET_VALUES = np.array([live_bucket_value(i) for i in range(LIVE_BUCKETS)])


@dataclass(frozen=True)
class Tier:
    """Points of ``step_s`` seconds (0: every sample as it came), at most ``capacity`` of them."""

    step_s: float
    capacity: int


# 1 s for an hour, 10 s for a day, 1 min for a week, 10 min for 31 days: 26,784 points.
TIERS = (Tier(0, 3600), Tier(10, 8640), Tier(60, 10080), Tier(600, 4464))


@dataclass
class Interval:
    """What one endpoint did over one sampling interval ending at ``ended_at`` (wall clock)."""

    ended_at: float
    span_s: float
    users: int = 0
    requests: int = 0
    errors: int = 0
    missed: int = 0
    connections: int = 0
    events: int = 0  # the error-ratio denominator (requests or frames, and ws connects)
    connects: int = 0  # ws connections opened (reconnects show here)
    latency: Counts | None = None  # live-histogram bucket counts of this interval
    reconnect: Counts | None = None


def quantile_of(counts: Counts | None, q: float) -> float:
    """The nearest-rank ``q`` quantile of live-histogram ``counts`` (NaN when empty)."""
    if counts is None:
        return math.nan
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1])
    if total == 0:
        return math.nan
    need = max(1, math.ceil(q * total - 1e-9))
    return float(_BUCKET_VALUES[int(np.searchsorted(cumulative, need))])


def quantiles_of(counts: Counts | None, qs: Sequence[float]) -> list[float]:
    """:func:`quantile_of` for several ``qs`` with one cumulative sum."""
    if counts is None:
        return [math.nan] * len(qs)
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1])
    if total == 0:
        return [math.nan] * len(qs)
    needs = [max(1, math.ceil(q * total - 1e-9)) for q in qs]
    return [float(v) for v in _BUCKET_VALUES[np.searchsorted(cumulative, needs)]]


@dataclass
class _Bucket:
    """The point a tier is filling: sums until its step is over."""

    index: int
    ended_at: float = 0.0
    sums: list[float] = field(default_factory=lambda: [0.0] * 7)
    latency: Counts | None = None  # made at the first interval that has any
    reconnect: Counts | None = None

    def add(self, iv: Interval) -> None:
        s = self.sums
        s[0] += iv.span_s
        s[1] += iv.users * iv.span_s
        s[2] += iv.requests
        s[3] += iv.errors
        s[4] += iv.missed
        s[5] += iv.connections * iv.span_s
        s[6] += iv.connects
        if iv.latency is not None:
            self.latency = iv.latency.copy() if self.latency is None else self.latency + iv.latency
        if iv.reconnect is not None:
            r = iv.reconnect
            self.reconnect = r.copy() if self.reconnect is None else self.reconnect + r
        self.ended_at = iv.ended_at

    def row(self) -> list[float]:
        span, users_s, requests, errors, missed, conns_s, connects = self.sums
        weight = span if span > 0 else 1.0
        return [
            span,
            users_s / weight,
            requests,
            errors,
            missed,
            conns_s / weight,
            connects,
            *quantiles_of(self.latency, (0.5, 0.95, 0.99)),
            quantile_of(self.reconnect, 0.95),
        ]


def _row_of(iv: Interval) -> list[float]:
    """The point of one sampling interval as it came."""
    return [
        iv.span_s,
        iv.users,
        iv.requests,
        iv.errors,
        iv.missed,
        iv.connections,
        iv.connects,
        *quantiles_of(iv.latency, (0.5, 0.95, 0.99)),
        quantile_of(iv.reconnect, 0.95),
    ]


class _Ring:
    """A fixed-size ring of points: end times (float64) and columns (float32)."""

    def __init__(self, capacity: int) -> None:
        self.at = np.zeros(capacity, np.float64)
        self.values = np.zeros((capacity, len(FIELDS)), np.float32)
        self.size = 0
        self.next = 0
        self.dropped = 0

    def append(self, at: float, row: Sequence[float]) -> None:
        capacity = len(self.at)
        self.at[self.next] = at
        self.values[self.next] = row
        self.next = (self.next + 1) % capacity
        if self.size < capacity:
            self.size += 1
        else:
            self.dropped += 1

    def ordered(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        if self.size < len(self.at):
            return self.at[: self.size], self.values[: self.size]
        order = np.r_[self.next : len(self.at), 0 : self.next]
        return self.at[order], self.values[order]

    @property
    def nbytes(self) -> int:
        return int(self.at.nbytes + self.values.nbytes)


class EndpointSeries:
    """One endpoint's points, finest for the recent past, coarser as they age."""

    def __init__(self, tiers: Sequence[Tier] = TIERS) -> None:
        self.tiers = tuple(tiers)
        self._rings = [_Ring(t.capacity) for t in self.tiers]
        self._open: list[_Bucket | None] = [None] * len(self.tiers)

    def add(self, iv: Interval) -> None:
        """Take one sampling interval into every tier."""
        for i, tier in enumerate(self.tiers):
            if tier.step_s <= 0:
                self._rings[i].append(iv.ended_at, _row_of(iv))
                continue
            index = math.floor(iv.ended_at / tier.step_s)
            bucket = self._open[i]
            if bucket is not None and bucket.index != index:
                self._rings[i].append(bucket.ended_at, bucket.row())
                bucket = None
            if bucket is None:
                bucket = self._open[i] = _Bucket(index)
            bucket.add(iv)

    def points(self, since: float | None = None) -> tuple[npt.NDArray[np.float64], np.ndarray]:
        """(end times, rows) in time order from ``since``: each tier where no finer one reaches."""
        times: list[npt.NDArray[np.float64]] = []
        rows: list[np.ndarray] = []
        newer_than = math.inf  # where the finer tiers' points begin
        for ring in self._rings:
            at, values = ring.ordered()
            if len(at) == 0:
                continue
            keep = at < newer_than
            if since is not None:
                keep &= at > since
            times.insert(0, at[keep])
            rows.insert(0, values[keep])
            # A finer tier's first point covers back to its own start, less one step.
            first = float(at[0]) - float(values[0][_COL["span_s"]])
            newer_than = min(newer_than, first)
        if not times:
            return np.zeros(0), np.zeros((0, len(FIELDS)), np.float32)
        return np.concatenate(times), np.concatenate(rows)

    def to_doc(self, since: float | None = None) -> dict[str, Any]:
        """The points as JSON-ready columns: ``t`` (Unix s) and each of :data:`FIELDS` (None: none).

        Rounded and listed by numpy, a column at a time: a month of points (17 k of them) is
        a few ms of the loop, not ~55 ms per endpoint (a Python ``round`` per value), which a
        report or a reader of the whole series would pay once the tiers have filled."""
        at, values = self.points(since)
        doc: dict[str, Any] = {"t": np.round(at, 3).tolist()}
        wide = values.astype(np.float64)  # the float32 columns as the floats Python sees
        missing = np.isnan(wide)
        rounded = np.round(wide, 6)
        for name, col in _COL.items():
            gaps = missing[:, col]
            column: list[float | None]
            if gaps.all():  # e.g. no reconnects at all: no floats to make
                column = [None] * len(gaps)
            else:
                column = rounded[:, col].tolist()
                for i in np.flatnonzero(gaps).tolist():
                    column[i] = None
            doc[name] = column
        return doc

    @property
    def nbytes(self) -> int:
        """Bytes held by the points, fixed from the start (the open buckets add ~100 KB)."""
        return sum(r.nbytes for r in self._rings)

    def __len__(self) -> int:
        return sum(r.size for r in self._rings)
