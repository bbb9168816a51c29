"""What every user kind is made of: its endpoints, and the record the ``KINDS`` table holds.

The config layer knows specs only: how a kind's users are built is the runtime's
(:data:`loadsvc.users.kinds.BUILDERS`), so nothing here imports a user class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import yaml

from loadsvc.config._nodes import Fields
from loadsvc.config._values import list_of, text
from loadsvc.protocols import ProtocolName

__all__ = [
    "EndpointRef",
    "EndpointUse",
    "UserKind",
    "UserSpec",
    "endpoint_label",
    "nullable_subset",
]


def endpoint_label(path: str) -> str:
    """The metric label of a request path: the route without a query string."""
    return urlsplit(path).path or "/"


def nullable_subset(fields: Fields, required: tuple[str, ...]) -> tuple[str, ...]:
    """``nullable_keys`` of a mapping that has ``required_keys``: each must be one of them."""
    nullable: tuple[str, ...] = fields.get("nullable_keys", list_of(text()), ())
    stray = [k for k in nullable if k not in required]
    if stray:
        fields.reader.error(
            fields.at("nullable_keys"),
            fields.value_node("nullable_keys"),
            f"{', '.join(map(repr, stray))} not in required_keys: only a required key "
            "can be allowed to be null",
        )
    return tuple(k for k in nullable if k in required)


@dataclass(frozen=True)
class EndpointRef:
    """One endpoint a scenario measures: its label, its protocol (a key of
    :data:`loadsvc.protocols.PROTOCOLS`) and, for REST, its method.

    ``sequenced``: its frames carry sequence numbers, so missed frames can be known
    (not part of what the endpoint is: two refs differing only in it are equal).
    """

    endpoint: str
    kind: ProtocolName
    method: str = ""
    sequenced: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class EndpointUse:
    """Where a user group or task measures an endpoint (to find HTTP/WS label clashes)."""

    endpoint: str
    protocol: ProtocolName
    path: str
    node: yaml.Node


class UserSpec(Protocol):
    """The spec of one user group, whatever its kind (see ``KINDS``)."""

    @property
    def kind(self) -> str:
        """The key of the group's kind in ``KINDS``."""

    @property
    def weight(self) -> int:
        """The group's share of the scenario's users."""

    def endpoints(self) -> tuple[EndpointRef, ...]:
        """The endpoints the group measures, in configuration order."""


S = TypeVar("S")


@dataclass(frozen=True)
class UserKind(Generic[S]):
    """One user kind as the config loader sees it.

    ``keys`` are the config keys a group of this kind may have (in the order error
    messages list them); ``read`` builds the spec from them (None when too broken,
    every problem reported) and records each endpoint it uses. How its users are
    built is the runtime's table, :data:`loadsvc.users.kinds.BUILDERS`.
    """

    keys: tuple[str, ...]
    read: Callable[[Fields, list[EndpointUse]], S | None]


AnyKind = UserKind[Any]
