"""Load shapes and the per-shard load plan are pure functions of elapsed time."""

from __future__ import annotations

import pytest

from loadsvc.config import parse_config
from loadsvc.config.spec import ConstantShapeSpec, RampingShapeSpec, Stage
from loadsvc.shapes import LoadPlan, Shard, apportion, shard_count

BURST = RampingShapeSpec(stages=(Stage(30, 800), Stage(120, 800), Stage(30, 0)))


def test_constant_shape_holds_users_until_its_duration() -> None:
    """A constant shape asks for its users throughout and for none once over."""
    shape = ConstantShapeSpec(users=500, duration_s=300)
    assert [shape.users_at(t) for t in (0, 1, 299.9, 300, 301)] == [500, 500, 500, 0, 0]
    assert shape.duration() == 300
    assert shape.peak() == 500


def test_constant_shape_spawns_at_its_rate() -> None:
    """With a spawn rate the users start spawn_rate per second, the first one at once."""
    shape = ConstantShapeSpec(users=500, duration_s=None, spawn_rate=100)
    assert [shape.users_at(t) for t in (0, 0.5, 1, 2.5, 4, 10)] == [1, 51, 101, 251, 401, 500]
    assert shape.duration() is None


def test_no_shape_asks_for_users_before_the_run_starts() -> None:
    """A negative elapsed time (a clock read before the start) asks for no users."""
    assert ConstantShapeSpec(users=5, duration_s=None).users_at(-0.1) == 0
    assert RampingShapeSpec(stages=(Stage(10, 5),), start_users=3).users_at(-0.1) == 0


def test_burst_ramps_holds_and_ramps_down() -> None:
    """The market-open burst goes 0 -> 800 in 30 s, holds to 150 s and is 0 by 180 s."""
    assert BURST.users_at(0) == 0
    assert BURST.users_at(15) == 400
    assert BURST.users_at(30) == 800
    assert BURST.users_at(149) == 800
    assert BURST.users_at(165) == 400
    assert BURST.users_at(180) == 0
    assert BURST.duration() == 180
    assert BURST.peak() == 800


def test_scaling_a_ramp_keeps_its_form() -> None:
    """--users scales every stage target by the same factor."""
    small = BURST.scaled(8)
    assert [s.target for s in small.stages] == [8, 8, 0]
    assert small.users_at(15) == 4


def test_scaling_a_constant_shape_sets_its_users() -> None:
    """--users on a constant shape replaces its users and keeps duration and spawn rate."""
    shape = ConstantShapeSpec(users=500, duration_s=60, spawn_rate=10).scaled(7)
    assert shape == ConstantShapeSpec(users=7, duration_s=60, spawn_rate=10)


def test_scaling_a_shape_without_users_leaves_it_alone() -> None:
    """A ramp whose peak is 0 cannot be scaled by a factor and stays as it is."""
    idle = RampingShapeSpec(stages=(Stage(10, 0),))
    assert idle.scaled(50) is idle


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
    assert [Shard(i, 3).share(total) for i in range(3)] == shares


def test_plan_splits_users_over_groups_by_weight() -> None:
    """On one shard the plan gives each group its weighted share of the shape's users."""
    plan = LoadPlan(BURST, weights=(3, 5))
    assert plan.users_at(15) == (150, 250)
    assert plan.users_at(30) == (300, 500)
    assert plan.users_at(180) == (0, 0)


@pytest.mark.parametrize("elapsed", [0, 1, 7.5, 15, 29, 30, 100, 151, 170, 179.9, 180])
def test_shard_plans_add_up_to_the_whole_plan(elapsed: float) -> None:
    """At any moment the plans of 4 shards add up, group by group, to the unsharded plan."""
    whole = LoadPlan(BURST, weights=(3, 5, 1)).users_at(elapsed)
    shards = [LoadPlan(BURST, (3, 5, 1), Shard(i, 4)).users_at(elapsed) for i in range(4)]
    assert tuple(map(sum, zip(*shards, strict=True))) == whole
    assert sum(whole) == BURST.users_at(elapsed)


def test_plan_of_a_scenario_uses_its_shape_and_group_weights() -> None:
    """LoadPlan.of reads the weights of the scenario's user groups in configuration order."""
    config = parse_config(
        "version: 1\n"
        "scenarios:\n"
        "  mixed:\n"
        "    shape: {kind: constant, users: 10}\n"
        "    users:\n"
        "      - {kind: ws_stream, path: /ws, weight: 3}\n"
        "      - {kind: rest, pacing: 1s, weight: 2, tasks: [{path: /a}]}\n"
    )
    plan = LoadPlan.of(config.scenario("mixed"), Shard(1, 2))
    assert plan.weights == (3, 2)
    assert plan.users_at(0) == (3, 2)
    assert LoadPlan.of(config.scenario("mixed"), Shard(0, 2)).users_at(0) == (3, 2)
