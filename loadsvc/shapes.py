"""Load shapes: how many users a scenario wants at each moment.

Pure functions of elapsed time, no asyncio, so they are tested without
running anything (k6's "planning" separated from running).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from loadsvc.config.spec import ConstantShapeSpec, RampingShapeSpec, ShapeSpec, Stage


def shape_duration(shape: ShapeSpec) -> float | None:
    """The planned length of a run in seconds; None when it runs until stopped."""
    if isinstance(shape, ConstantShapeSpec):
        return shape.duration_s
    return sum(s.duration_s for s in shape.stages)


def peak_users(shape: ShapeSpec) -> int:
    """The most users the shape ever asks for."""
    if isinstance(shape, ConstantShapeSpec):
        return shape.users
    return max([shape.start_users, *(s.target for s in shape.stages)])


def target_users(shape: ShapeSpec, elapsed: float) -> int:
    """Users the shape asks for ``elapsed`` seconds into a run (0 once it is over)."""
    if elapsed < 0:
        return 0
    if isinstance(shape, ConstantShapeSpec):
        if shape.duration_s is not None and elapsed >= shape.duration_s:
            return 0
        if shape.spawn_rate:
            # +1: the first user starts at once rather than after 1/spawn_rate seconds.
            return min(shape.users, math.floor(shape.spawn_rate * elapsed) + 1)
        return shape.users
    return _ramping_target(shape.start_users, shape.stages, elapsed)


def _ramping_target(start: int, stages: Sequence[Stage], elapsed: float) -> int:
    level = float(start)
    t0 = 0.0
    for stage in stages:
        if elapsed < t0 + stage.duration_s:
            frac = (elapsed - t0) / stage.duration_s
            return round(level + (stage.target - level) * frac)
        t0 += stage.duration_s
        level = float(stage.target)
    return 0


def scale_shape(shape: ShapeSpec, users: int) -> ShapeSpec:
    """The same shape with its peak scaled to ``users`` (``loadsvc run --users``)."""
    if isinstance(shape, ConstantShapeSpec):
        return replace(shape, users=users)
    peak = peak_users(shape)
    if peak == 0:
        return shape

    def scaled(n: int) -> int:
        return round(n * users / peak)

    return replace(
        shape,
        start_users=scaled(shape.start_users),
        stages=tuple(Stage(s.duration_s, scaled(s.target)) for s in shape.stages),
    )


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
    "ConstantShapeSpec",
    "RampingShapeSpec",
    "apportion",
    "peak_users",
    "scale_shape",
    "shape_duration",
    "shard_count",
    "target_users",
]
