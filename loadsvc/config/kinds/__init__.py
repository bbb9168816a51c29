"""User kinds: one module each (spec, config keys and reading, endpoints, construction).

``KINDS`` is the one table both the config loader and the runner use. Adding a
kind is a module here (with its user class in :mod:`loadsvc.users`) and one line
in the table.
"""

from __future__ import annotations

from loadsvc.config.kinds import rest, ws_reconnect, ws_stream
from loadsvc.config.kinds._base import (
    AnyKind,
    EndpointRef,
    EndpointUse,
    UserFactory,
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
from loadsvc.config.kinds.rest import HttpTaskSpec, RestUserSpec
from loadsvc.config.kinds.ws_reconnect import WsReconnectUserSpec
from loadsvc.config.kinds.ws_stream import WsStreamUserSpec

KINDS: dict[str, AnyKind] = {
    "rest": rest.KIND,
    "ws_stream": ws_stream.KIND,
    "ws_reconnect": ws_reconnect.KIND,
}

__all__ = [
    "FRAME",
    "KINDS",
    "EndpointRef",
    "EndpointUse",
    "HttpTaskSpec",
    "RestUserSpec",
    "UserFactory",
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
