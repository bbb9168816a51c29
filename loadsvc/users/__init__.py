"""Virtual user kinds, one per module; the runner builds them through the ``BUILDERS`` table."""

from __future__ import annotations

from dataclasses import dataclass

from loadsvc.config.kinds import UserSpec
from loadsvc.users.base import EndpointSinks, Target, UserContext, VirtualUser
from loadsvc.users.frames import FrameReader
from loadsvc.users.kinds import BUILDERS, UserFactory
from loadsvc.users.rest import RestUser
from loadsvc.users.ws import WsReconnectUser, WsStreamUser


@dataclass
class GroupWiring:
    """What the runner needs to create users of one group: its sinks resolved once."""

    spec: UserSpec
    make: UserFactory


def wire_group(spec: UserSpec, sinks: EndpointSinks) -> GroupWiring:
    """Resolve a group's sinks once (by its kind) and return a factory for its users."""
    return GroupWiring(spec, BUILDERS[spec.kind](spec, sinks))


__all__ = [
    "BUILDERS",
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
