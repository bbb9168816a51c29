"""bench/soak_census.py: what died frozen, found by type on the running loop."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from bench.soak_census import census

HOLDERS = 500


class Holder:
    """Holds a generator suspended in one of its own methods: a cycle only a finalizer breaks."""

    def __init__(self) -> None:
        self.parser = self._parse()
        next(self.parser)

    def _parse(self) -> Iterator[None]:
        yield


@pytest.fixture
def thawed() -> Iterator[None]:
    """Whatever the test froze is unfrozen after it."""
    try:
        yield
    finally:
        gc.unfreeze()
        gc.collect()


def test_the_census_finds_cycles_that_died_frozen_by_type(thawed: None) -> None:
    """500 generator-held cycles that died frozen: the census's types show all 500 gone
    while the collector's own count misses them (their finalizers broke the cycles first)."""

    async def body() -> dict[str, Any]:
        holders = [Holder() for _ in range(HOLDERS)]
        gc.collect()
        gc.freeze()
        del holders  # dead now, in cycles among frozen objects
        return await asyncio.to_thread(census, 10.0)

    found = asyncio.run(body())
    assert "error" not in found, found
    fell = {name: -n for n, name in found["fell"]}
    assert fell.get(f"{__name__}.Holder") == HOLDERS, found["fell"]
    assert fell.get("builtins.generator", 0) >= HOLDERS, found["fell"]
    assert found["collected"] < HOLDERS, found  # the collector's count is no measure of it
    assert found["blocks"][1] < found["blocks"][0]


def test_the_census_says_when_no_loop_runs() -> None:
    """Without a running loop on the main thread it says so rather than report nothing."""
    assert census(1.0) == {"error": "no running loop found on the main thread"}
