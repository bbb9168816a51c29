"""Load shapes are pure functions of elapsed time."""

from __future__ import annotations

import pytest

from loadsvc.config.spec import ConstantShapeSpec, RampingShapeSpec, Stage
from loadsvc.shapes import (
    apportion,
    peak_users,
    scale_shape,
    shape_duration,
    shard_count,
    target_users,
)

BURST = RampingShapeSpec(stages=(Stage(30, 800), Stage(120, 800), Stage(30, 0)))


def test_constant_shape_holds_users_until_its_duration() -> None:
    """A constant shape asks for its users throughout and for none once over."""
    shape = ConstantShapeSpec(users=500, duration_s=300)
    assert [target_users(shape, t) for t in (0, 1, 299.9, 300, 301)] == [500, 500, 500, 0, 0]
    assert shape_duration(shape) == 300


def test_constant_shape_spawns_at_its_rate() -> None:
    """With a spawn rate the users start spawn_rate per second, the first one at once."""
    shape = ConstantShapeSpec(users=500, duration_s=None, spawn_rate=100)
    assert [target_users(shape, t) for t in (0, 0.5, 1, 2.5, 4, 10)] == [1, 51, 101, 251, 401, 500]
    assert shape_duration(shape) is None


def test_burst_ramps_holds_and_ramps_down() -> None:
    """The market-open burst goes 0 -> 800 in 30 s, holds to 150 s and is 0 by 180 s."""
    assert target_users(BURST, 0) == 0
    assert target_users(BURST, 15) == 400
    assert target_users(BURST, 30) == 800
    assert target_users(BURST, 149) == 800
    assert target_users(BURST, 165) == 400
    assert target_users(BURST, 180) == 0
    assert shape_duration(BURST) == 180
    assert peak_users(BURST) == 800


def test_scaling_a_ramp_keeps_its_form() -> None:
    """--users scales every stage target by the same factor."""
    small = scale_shape(BURST, 8)
    assert isinstance(small, RampingShapeSpec)
    assert [s.target for s in small.stages] == [8, 8, 0]
    assert target_users(small, 15) == 4


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (800, [3, 5], [300, 500]),
        (5, [3, 5], [2, 3]),
        (1, [3, 5], [0, 1]),
        (9, [5, 3, 1], [5, 3, 1]),
        (0, [1], [0]),
    ],
)
def test_apportion_splits_by_weight_and_adds_up(
    total: int, weights: list[int], expected: list[int]
) -> None:
    """Largest remainder: parts follow the weights and add up exactly to the total."""
    parts = apportion(total, weights)
    assert parts == expected
    assert sum(parts) == total


@pytest.mark.parametrize("total", [0, 1, 2, 100, 499, 500, 501])
def test_shards_add_up_to_the_total(total: int) -> None:
    """The shares of n shards sum exactly to the configured users and differ by at most one."""
    shares = [shard_count(total, i, 3) for i in range(3)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1
