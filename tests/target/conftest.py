"""Fixtures for the reference target's tests: a real target on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from loadsvc.target.settings import TargetSettings
from loadsvc.target.testing import RunningTarget, running_target

# Fast pacing for tests that need many frames quickly; the seed's pacing is the default.
FAST_SETTINGS = TargetSettings(throttle_s=0.05, tick_s=0.01, alert_probability=1.0)


@pytest.fixture
async def target() -> AsyncIterator[RunningTarget]:
    """A target with the seed's default pacing (500 ms throttle, queue of 50)."""
    async with running_target() as running:
        yield running


@pytest.fixture
async def fast_target() -> AsyncIterator[RunningTarget]:
    """A target that publishes every ~50 ms, for tests that need frames quickly."""
    async with running_target(settings=FAST_SETTINGS) as running:
        yield running
