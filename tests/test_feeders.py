"""Per-user values handed out in the scenario's order, unique rows leased and given back."""

from __future__ import annotations

import random

from loadsvc.config.spec import DataSpec
from loadsvc.feeders import Feeder

ROWS = tuple({"acct": f"a{i}"} for i in range(4))


def test_round_robin_cycles_and_numbers_users() -> None:
    """Rows in turn; every user has its number and scenario."""
    feeder = Feeder(DataSpec(rows=ROWS), "s", random.Random(1))
    got = [feeder.take() for _ in range(5)]
    assert [v["acct"] for v in got if v] == ["a0", "a1", "a2", "a3", "a0"]
    assert [v["user"] for v in got if v] == [1, 2, 3, 4, 5]
    assert all(v and v["scenario"] == "s" for v in got)


def test_unique_never_gives_a_held_row_and_reuses_a_returned_one() -> None:
    """A unique row is held by one live user; when all are held the next user waits."""
    feeder = Feeder(DataSpec(rows=ROWS[:2], order="unique"), "s", random.Random(1))
    first, second = feeder.take(), feeder.take()
    assert first and second and first["acct"] != second["acct"]
    assert feeder.take() is None and feeder.short == 1
    feeder.give_back(first)
    third = feeder.take()
    assert third is not None and third["acct"] == first["acct"]
    feeder.give_back({"acct": "a1"})  # not a lease: nothing is freed
    assert feeder.take() is None


def test_shards_split_rows_and_user_numbers() -> None:
    """Shard i of n takes rows i, i+n, ... and numbers users i+1, i+1+n, ..."""
    spec = DataSpec(rows=ROWS, order="unique")
    shard = Feeder(spec, "s", random.Random(1), shard_index=1, shard_count=2)
    got = [shard.take(), shard.take(), shard.take()]
    assert [v["acct"] for v in got if v] == ["a1", "a3"] and got[2] is None
    assert [v["user"] for v in got if v] == [2, 4]


def test_random_draws_from_all_rows_and_without_data_only_builtins() -> None:
    """Random order reaches every row; no data gives the built-ins alone."""
    feeder = Feeder(DataSpec(rows=ROWS, order="random"), "s", random.Random(3))
    seen = {v["acct"] for v in (feeder.take() for _ in range(200)) if v}
    assert seen == {"a0", "a1", "a2", "a3"}
    assert Feeder(None, "s", random.Random(1)).take() == {"user": 1, "scenario": "s"}
