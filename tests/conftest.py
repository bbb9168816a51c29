"""Shared fixtures: a real reference target on 127.0.0.1 port 0, fresh metric registries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from loadsvc.metrics import Metrics, create_metrics
from loadsvc.target.testing import RunningTarget, running_target


@pytest.fixture
async def target() -> AsyncIterator[RunningTarget]:
    """The reference target, in this test's event loop, on a free port."""
    async with running_target() as t:
        yield t


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry: tests never touch the global one."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    """The metric contract on the fresh registry."""
    return create_metrics(registry)
