"""The load plan: which users each group of a scenario should have, for one shard.

Pure functions of elapsed time, no asyncio, so they are tested without running
anything (k6's "planning" separated from running). The shapes themselves
(``users_at``, ``duration``, ``peak``, ``scaled``) are methods of their specs in
:mod:`loadsvc.config.spec`; the runner executes the plan made here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from loadsvc.config.spec import ScenarioSpec, ShapeSpec


@dataclass(frozen=True)
class Shard:
    """This process's share of every scenario: shard ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def share(self, total: int) -> int:
        """This shard's part of ``total`` users; the parts of all shards add up exactly."""
        return shard_count(total, self.index, self.count)


@dataclass(frozen=True)
class LoadPlan:
    """How many users each user group of a scenario should have, on one shard.

    The scenario's total at a moment is split over the groups by weight, then each
    group's number over the shards, so every shard runs every kind of user and the
    shards add up to the whole plan.
    """

    shape: ShapeSpec
    weights: tuple[int, ...]
    shard: Shard = Shard()

    @classmethod
    def of(cls, spec: ScenarioSpec, shard: Shard = Shard()) -> LoadPlan:
        """The plan of ``spec`` (its shape and its groups' weights) for ``shard``."""
        return cls(spec.shape, tuple(u.weight for u in spec.users), shard)

    def users_at(self, elapsed: float) -> tuple[int, ...]:
        """Users of each group on this shard ``elapsed`` seconds into the run."""
        whole = apportion(self.shape.users_at(elapsed), self.weights)
        return tuple(self.shard.share(n) for n in whole)


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` users across groups by ``weights``; the parts add up exactly.

    Largest remainder method, ties to the earlier group, so that a shard or a
    ramp step never loses or invents a user.
    """
    wsum = sum(weights)
    if total <= 0 or wsum <= 0:
        return [0] * len(weights)
    exact = [total * w / wsum for w in weights]
    parts = [math.floor(x) for x in exact]
    short = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:short]:
        parts[i] += 1
    return parts


def shard_count(total: int, index: int, count: int) -> int:
    """Users of shard ``index`` of ``count`` when ``total`` are configured; shards add up."""
    return total // count + (1 if index < total % count else 0)


__all__ = [
    "LoadPlan",
    "Shard",
    "apportion",
    "shard_count",
]
