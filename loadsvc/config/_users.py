"""Reading a scenario's user groups: each by its kind's module, found in ``KINDS``."""

from __future__ import annotations

import yaml

from loadsvc.config._nodes import Reader
from loadsvc.config._values import join
from loadsvc.config.kinds import KINDS, EndpointUse, UserSpec

__all__ = ["EndpointUse", "read_users"]


def read_users(
    reader: Reader, node: yaml.Node, path: str
) -> tuple[tuple[UserSpec, ...], tuple[EndpointUse, ...]]:
    """Read a scenario's ``users`` list: the user specs and every endpoint they use."""
    if not isinstance(node, yaml.SequenceNode):
        reader.error(path, node, "expected a list of user groups")
        return (), ()
    if not node.value:
        reader.error(path, node, "at least one user group is required")
    users: list[UserSpec] = []
    uses: list[EndpointUse] = []
    for index, user_node in enumerate(node.value):
        user_path = join(path, index)
        name = reader.kind(user_node, user_path, tuple(KINDS))
        if name is None:
            continue
        kind = KINDS[name]
        fields = reader.mapping(user_node, user_path, kind.keys, context=f"for user kind {name!r}")
        if fields is None:  # pragma: no cover - reader.kind checked it is a mapping
            continue
        user = kind.read(fields, uses)
        if user is not None:
            users.append(user)
    return tuple(users), tuple(uses)
