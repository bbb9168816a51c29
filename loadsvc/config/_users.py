"""Reading a scenario's user groups: each by its kind's module, found in ``KINDS``."""

from __future__ import annotations

import yaml

from loadsvc.config._nodes import Reader
from loadsvc.config._values import join
from loadsvc.config.kinds import KINDS, EndpointUse, UserSpec

__all__ = ["EndpointUse", "read_users"]

_KEYS = {name: kind.keys for name, kind in KINDS.items()}


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
        read = reader.variant(user_node, user_path, _KEYS, "user")
        if read is None:
            continue
        name, fields = read
        user = KINDS[name].read(fields, uses)
        if user is not None:
            users.append(user)
    return tuple(users), tuple(uses)
