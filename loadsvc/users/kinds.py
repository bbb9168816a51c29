"""The runtime side of the user kinds: how each config kind's users are built.

The config layer (:data:`loadsvc.config.kinds.KINDS`) knows a kind's keys and
spec; this table maps the same kind to a builder that resolves a group's sinks
once and returns the factory the runner creates its users with. An explicit
``{kind: builder}`` table: no self-registration. The config layer never imports
a user class; only this runtime module does.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from loadsvc.config.kinds import (
    EndpointRef,
    PythonUserSpec,
    RestUserSpec,
    WsReconnectUserSpec,
    WsStreamUserSpec,
    WsUserSpec,
)
from loadsvc.users.base import EndpointSinks, UserContext, VirtualUser, WsSink
from loadsvc.users.python import ManagedUser
from loadsvc.users.rest import RestUser
from loadsvc.users.ws import WsReconnectUser, WsStreamUser

__all__ = ["BUILDERS", "Builder", "UserFactory"]

UserFactory = Callable[[UserContext, random.Random], VirtualUser]
"""Makes one user of a group: given the run's context and the user's own random source."""
Builder = Callable[[Any, EndpointSinks], UserFactory]
"""Resolves a group's sinks once (from its spec) and returns the factory of its users."""


def _rest(spec: RestUserSpec, sinks: EndpointSinks) -> UserFactory:
    """One HTTP sink per task, resolved once; each user gets its own connection."""
    http = [sinks.http_sink(ref) for ref in spec.endpoints()]
    return lambda ctx, rng: RestUser(spec, ctx, http, rng)


def _ws_sink(spec: WsUserSpec, sinks: EndpointSinks) -> WsSink:
    """The one sink a WS group's users share."""
    return sinks.ws_sink(spec.endpoints()[0])


def _ws_stream(spec: WsStreamUserSpec, sinks: EndpointSinks) -> UserFactory:
    sink = _ws_sink(spec, sinks)
    return lambda ctx, rng: WsStreamUser(spec, ctx, sink, rng)


def _ws_reconnect(spec: WsReconnectUserSpec, sinks: EndpointSinks) -> UserFactory:
    sink = _ws_sink(spec, sinks)
    return lambda ctx, rng: WsReconnectUser(spec, ctx, sink, rng)


# The sink of an endpoint by its protocol (keys: loadsvc.protocols.PROTOCOLS).
SINK_OF: dict[str, Callable[[EndpointSinks, EndpointRef], Any]] = {
    "http": lambda sinks, ref: sinks.http_sink(ref),
    "ws": lambda sinks, ref: sinks.ws_sink(ref),
}


def _python(spec: PythonUserSpec, sinks: EndpointSinks) -> UserFactory:
    """The sinks of every endpoint the class declares, resolved once; users of its class."""
    resolved = {(r.kind, r.endpoint, r.method): SINK_OF[r.kind](sinks, r) for r in spec.endpoints()}
    cls, options = spec.user_class, spec.options
    return lambda ctx, rng: ManagedUser(lambda: cls(ctx, resolved, rng, options))


BUILDERS: dict[str, Builder] = {
    "rest": _rest,
    "ws_stream": _ws_stream,
    "ws_reconnect": _ws_reconnect,
    "python": _python,
}
"""Each user kind of :data:`loadsvc.config.kinds.KINDS` (same keys) to its builder."""
