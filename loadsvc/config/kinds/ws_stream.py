"""The ``ws_stream`` user kind: a WebSocket client that connects and receives continuously."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from loadsvc.config._nodes import Fields
from loadsvc.config.kinds._base import EndpointUse, UserKind
from loadsvc.config.kinds._ws import WS_KEYS, WsUserSpec, read_ws_options, read_ws_user

__all__ = ["KIND", "WsStreamUserSpec"]


@dataclass(frozen=True)
class WsStreamUserSpec(WsUserSpec):
    """A WS client that connects to ``path`` and receives continuously."""

    kind: Literal["ws_stream"] = "ws_stream"


def read(fields: Fields, uses: list[EndpointUse]) -> WsStreamUserSpec | None:
    """A ws_stream group: the shared WS options only."""
    return read_ws_user(WsStreamUserSpec, read_ws_options(fields, uses))


KIND = UserKind[WsStreamUserSpec](keys=WS_KEYS, read=read)
