"""Fixtures of the protocol clients' tests."""

from __future__ import annotations

import pytest

from tests.support.loops import LOOP_KINDS, Run, loop_runner


@pytest.fixture(params=LOOP_KINDS)
def run(request: pytest.FixtureRequest) -> Run:
    """Run a test body on a fresh loop of each kind (uvloop is what the generator uses)."""
    return loop_runner(request.param)
