"""Virtual user kinds, one per module, and the explicit table the runner builds them from."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from loadsvc.config.spec import EndpointRef, RestUserSpec, UserSpec, WsReconnectUserSpec
from loadsvc.users.base import EndpointSinks, Target, UserContext, VirtualUser
from loadsvc.users.frames import FrameReader
from loadsvc.users.rest import RestUser, task_refs
from loadsvc.users.ws import WsReconnectUser, WsStreamUser

UserFactory = Callable[[UserContext, random.Random], VirtualUser]


@dataclass
class GroupWiring:
    """What the runner needs to create users of one group: its sinks resolved once."""

    spec: UserSpec
    make: UserFactory


def wire_group(spec: UserSpec, sinks: EndpointSinks) -> GroupWiring:
    """Resolve a group's sinks once and return a factory for its users."""
    if isinstance(spec, RestUserSpec):
        http = [sinks.http_sink(ref) for ref in task_refs(spec)]
        rest_spec = spec
        return GroupWiring(spec, lambda ctx, rng: RestUser(rest_spec, ctx, http, rng))
    sink = sinks.ws_sink(EndpointRef(spec.endpoint, "ws"))
    if isinstance(spec, WsReconnectUserSpec):
        storm = spec
        return GroupWiring(spec, lambda ctx, rng: WsReconnectUser(storm, ctx, sink, rng))
    stream = spec
    return GroupWiring(spec, lambda ctx, rng: WsStreamUser(stream, ctx, sink, rng))


__all__ = [
    "FrameReader",
    "GroupWiring",
    "RestUser",
    "Target",
    "UserContext",
    "VirtualUser",
    "WsReconnectUser",
    "WsStreamUser",
    "wire_group",
]
