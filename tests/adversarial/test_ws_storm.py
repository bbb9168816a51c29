"""The reconnect storm on uvloop: exactly one reconnect per user per cycle, by the target's count."""

from __future__ import annotations

import asyncio

import uvloop
from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.target.settings import TargetSettings
from loadsvc.target.testing import running_target
from loadsvc.users import Target

USERS = 10
CYCLE_S = 1.0
DURATION_S = 3.5  # cycle boundaries at 1, 2 and 3 s; each reconnect is done by ~x.1 s
# Per user: the first connect, the reconnect after the first frames, one per boundary.
HANDSHAKES_PER_USER = 2 + 3

STORM = f"""
version: 1
scenarios:
  s:
    shape: {{kind: constant, users: {USERS}, duration: {DURATION_S}s}}
    users:
      - kind: ws_reconnect
        path: /ws/market
        cycle: {CYCLE_S}s
        messages_per_cycle: 1
"""


async def storm() -> tuple[int, int, int]:
    """Run the storm against a fast-publishing target: (target handshakes, connects, errors)."""
    spec = parse_config(STORM, "storm.yaml").scenario("s")
    # A 20 ms throttle: the frame each cycle waits for comes well within its cycle.
    async with running_target(settings=TargetSettings(throttle_s=0.02)) as target:
        recorder = Recorder(create_metrics(CollectorRegistry()))
        result = await ScenarioRun(
            spec, Target(target.url), recorder, RunOptions(tick_s=0.1, seed=1)
        ).execute()
        handshakes = (await target.stats())["handshakes"]["/ws/market"]
    (ws,) = result.endpoints
    return handshakes, ws.connects, ws.connection_errors


def test_exactly_one_reconnect_per_user_per_cycle_on_uvloop() -> None:
    """uvloop timers may wake just before a boundary; no user runs a second cycle at once."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        handshakes, connects, errors = runner.run(storm())
    assert errors == 0
    assert handshakes == connects == USERS * HANDSHAKES_PER_USER
