"""The ``ws_reconnect`` user kind: a WebSocket client in a reconnect storm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from loadsvc.config._nodes import Fields
from loadsvc.config._values import duration, integer
from loadsvc.config.kinds._base import EndpointUse, UserKind
from loadsvc.config.kinds._ws import WS_KEYS, WsUserSpec, read_ws_options, read_ws_user

__all__ = ["KIND", "WsReconnectUserSpec"]


@dataclass(frozen=True)
class WsReconnectUserSpec(WsUserSpec):
    """A WS client in a reconnect storm.

    On every ``cycle_s`` boundary of the scenario's clock (so all users act
    together) it receives ``messages_per_cycle`` frames, then disconnects and
    reconnects at once; the reconnect time is measured. Between storms it keeps
    reading.
    """

    cycle_s: float = 10.0
    messages_per_cycle: int = 3
    kind: Literal["ws_reconnect"] = "ws_reconnect"


def read(fields: Fields, uses: list[EndpointUse]) -> WsReconnectUserSpec | None:
    """A ws_reconnect group: the shared WS options, its cycle and frames per cycle."""
    options = read_ws_options(fields, uses)
    cycle = fields.get("cycle", duration(), WsReconnectUserSpec.cycle_s)
    per_cycle = fields.get("messages_per_cycle", integer(1), WsReconnectUserSpec.messages_per_cycle)
    return read_ws_user(WsReconnectUserSpec, options, cycle_s=cycle, messages_per_cycle=per_cycle)


KIND = UserKind[WsReconnectUserSpec](keys=(*WS_KEYS, "cycle", "messages_per_cycle"), read=read)
