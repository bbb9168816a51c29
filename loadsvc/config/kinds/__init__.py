"""User kinds: one module each (spec, config keys and reading, endpoints, construction).

``KINDS`` is the config loader's table: a kind's keys and how its spec is read.
The runtime side, :data:`loadsvc.users.kinds.BUILDERS`, maps the same kinds to how
their users are built (this package never imports a user class). Adding a kind is
a module here and a line in each table.
"""

from __future__ import annotations

from loadsvc.config.kinds import python, rest, ws_reconnect, ws_stream
from loadsvc.config.kinds._base import (
    AnyKind,
    EndpointRef,
    EndpointUse,
    UserKind,
    UserSpec,
    endpoint_label,
)
from loadsvc.config.kinds._conversation import (
    FRAME,
    WsAckSpec,
    WsConversationSpec,
    WsHeartbeatSpec,
    WsMatch,
    WsPeriodicSpec,
)
from loadsvc.config.kinds._ws import WsBackoffSpec, WsMessageSpec, WsUserSpec
from loadsvc.config.kinds.python import PythonUserSpec
from loadsvc.config.kinds.rest import HttpTaskSpec, RestUserSpec
from loadsvc.config.kinds.ws_reconnect import WsReconnectUserSpec
from loadsvc.config.kinds.ws_stream import WsStreamUserSpec

KINDS: dict[str, AnyKind] = {
    "rest": rest.KIND,
    "ws_stream": ws_stream.KIND,
    "ws_reconnect": ws_reconnect.KIND,
    "python": python.KIND,
}

__all__ = [
    "FRAME",
    "KINDS",
    "EndpointRef",
    "EndpointUse",
    "HttpTaskSpec",
    "PythonUserSpec",
    "RestUserSpec",
    "UserKind",
    "UserSpec",
    "WsAckSpec",
    "WsBackoffSpec",
    "WsConversationSpec",
    "WsHeartbeatSpec",
    "WsMatch",
    "WsMessageSpec",
    "WsPeriodicSpec",
    "WsReconnectUserSpec",
    "WsStreamUserSpec",
    "WsUserSpec",
    "endpoint_label",
]
