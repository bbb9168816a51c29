"""Handing a scenario's per-user values (its ``data`` rows) out to the users of one run.

Each user gets its values when it is created: one row of the scenario's data plus the
built-in ``user`` (its number in the run: 1, 2, ... across every shard) and ``scenario``.
``round_robin`` and ``random`` may give one row to several users; ``unique`` leases a row
to one live user and takes it back when that user ends, so no two users of a run ever hold
the same row at once. Rows are split between shards (shard ``i`` of ``n`` takes rows
``i, i+n, ...``), so ``unique`` holds across the processes of a sharded run too.

>>> from loadsvc.config.spec import DataSpec
>>> feeder = Feeder(DataSpec(rows=({"sym": "VCB"}, {"sym": "FPT"})), "s", random.Random(1))
>>> [feeder.take()["sym"] for _ in range(3)]
['VCB', 'FPT', 'VCB']
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from typing import Any

from loadsvc.config.spec import DataSpec

__all__ = ["Feeder", "UserValues"]

UserValues = Mapping[str, Any]


class Feeder:
    """The values of each new user of one scenario run (one shard's part of the rows)."""

    def __init__(
        self,
        spec: DataSpec | None,
        scenario: str,
        rng: random.Random,
        shard_index: int = 0,
        shard_count: int = 1,
    ) -> None:
        self.spec = spec
        self.scenario = scenario
        self._rng = rng
        self._shard_index = shard_index
        self._shard_count = max(1, shard_count)
        rows = spec.rows if spec is not None else ()
        # This shard's rows; a shard with none (more shards than rows) shares them all.
        self._rows = rows[shard_index :: self._shard_count] or rows
        self._next = 0
        self._free: deque[int] = deque(range(len(self._rows)))
        self._leases: dict[int, int] = {}  # id of a user's values -> the unique row it holds
        self._users = 0
        self.short = 0  # users that could not start: every unique row was held

    @property
    def order(self) -> str:
        """How rows are handed out (``round_robin`` without data: only built-ins)."""
        return self.spec.order if self.spec is not None else "round_robin"

    def take(self) -> dict[str, Any] | None:
        """The values of a new user; None when ``unique`` rows are all held (try later)."""
        row: Mapping[str, Any] = {}
        lease = None
        if self._rows:
            if self.order == "unique":
                if not self._free:
                    self.short += 1
                    return None
                lease = self._free.popleft()
                row = self._rows[lease]
            elif self.order == "random":
                row = self._rows[self._rng.randrange(len(self._rows))]
            else:
                row = self._rows[self._next % len(self._rows)]
                self._next += 1
        self._users += 1
        number = self._shard_index + 1 + (self._users - 1) * self._shard_count
        values = {**row, "user": number, "scenario": self.scenario}
        if lease is not None:
            self._leases[id(values)] = lease
        return values

    def give_back(self, values: UserValues) -> None:
        """A user ended: its ``unique`` row is free for the next user."""
        lease = self._leases.pop(id(values), None)
        if lease is not None:
            self._free.append(lease)
