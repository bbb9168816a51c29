"""Virtual user kinds, one per module; the runner builds them through the ``KINDS`` table."""

from __future__ import annotations

from dataclasses import dataclass

from loadsvc.config.kinds import KINDS, UserFactory, UserSpec
from loadsvc.recorder import Recorder, ScenarioStats
from loadsvc.users.base import Target, UserContext, VirtualUser
from loadsvc.users.frames import FrameReader
from loadsvc.users.rest import RestUser
from loadsvc.users.ws import WsReconnectUser, WsStreamUser


@dataclass
class GroupWiring:
    """What the runner needs to create users of one group: its sinks resolved once."""

    spec: UserSpec
    make: UserFactory


def wire_group(spec: UserSpec, recorder: Recorder, stats: ScenarioStats) -> GroupWiring:
    """Resolve a group's sinks once (by its kind) and return a factory for its users."""
    return GroupWiring(spec, KINDS[spec.kind].build(spec, recorder, stats))


__all__ = [
    "FrameReader",
    "GroupWiring",
    "RestUser",
    "Target",
    "UserContext",
    "UserFactory",
    "VirtualUser",
    "WsReconnectUser",
    "WsStreamUser",
    "wire_group",
]
