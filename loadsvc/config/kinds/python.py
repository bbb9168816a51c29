"""The ``python`` user kind: a user class written in Python, for what YAML cannot say.

A group names its class as ``module:Class``, importable from the configuration
file's directory or ``PYTHONPATH``, and may pass it ``options`` (any YAML
mapping, handed to the class as is). The class declares the endpoints it
measures (``endpoints``: protocol and label), so thresholds, metrics, verdicts
and dashboards cover them as they cover a built-in kind's.

The class is imported when the configuration is read, so a class that cannot be
imported, or is not a user class (no ``endpoints``, no ``async def run``), is a
configuration error naming the ``class`` field, before anything starts. How its
users are built (with the same sinks and clock as a built-in user) is the
runtime's: :class:`loadsvc.users.python.PythonUser`.

.. code-block:: yaml

    users:
      - kind: python
        class: custom_user:SnapshotThenStream
        weight: 1
        options: {snapshot_every: 5s}
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from loadsvc.config._nodes import Fields
from loadsvc.config._values import Invalid, integer, text
from loadsvc.config.kinds._base import EndpointRef, EndpointUse, UserKind
from loadsvc.protocols import PROTOCOLS

__all__ = ["KIND", "PythonUserSpec", "import_user_class"]


@dataclass(frozen=True)
class PythonUserSpec:
    """A group of users of a Python class (``user_class``, imported from ``class_path``)."""

    class_path: str
    user_class: type = field(compare=False, repr=False)
    endpoint_refs: tuple[EndpointRef, ...]
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    weight: int = 1
    kind: Literal["python"] = "python"

    def endpoints(self) -> tuple[EndpointRef, ...]:
        """The endpoints the class declares, in its order."""
        return self.endpoint_refs


_KEYS = ("kind", "weight", "class", "options")


def import_user_class(
    class_path: str, base_dir: str | None
) -> tuple[type, tuple[EndpointRef, ...]]:
    """The class ``module:Class`` names and the endpoints it declares; :class:`Invalid` says
    why it cannot be used. ``base_dir`` (the configuration file's directory) is searched
    before ``sys.path``."""
    module_name, sep, class_name = class_path.partition(":")
    if not sep or not module_name or not class_name:
        raise Invalid(f"expected 'module:Class', got {class_path!r}")
    added = base_dir is not None and base_dir not in sys.path
    if added:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    # Any failure of the user's module is a config error, not a crash; SystemExit too (a
    # script's argparse at import, a stray sys.exit(0): 'valid', or a run's exit 0).
    except (Exception, SystemExit) as exc:
        where = f" (searched {base_dir} and PYTHONPATH)" if base_dir else ""
        raise Invalid(
            f"cannot import {module_name!r}{where}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        if added:
            sys.path.remove(str(base_dir))
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise Invalid(f"{module_name!r} has no class {class_name!r}")
    if not inspect.iscoroutinefunction(getattr(cls, "run", None)):
        raise Invalid(
            f"{class_path} is not a user class: it needs 'async def run(self)' "
            "(subclass loadsvc.users.python.PythonUser)"
        )
    return cls, _declared_endpoints(class_path, getattr(cls, "endpoints", None))


def _declared_endpoints(class_path: str, declared: object) -> tuple[EndpointRef, ...]:
    if (
        not isinstance(declared, tuple | list)
        or not declared
        or not all(isinstance(e, EndpointRef) for e in declared)
    ):
        raise Invalid(
            f"{class_path} is not a user class: its 'endpoints' must be a non-empty tuple of "
            "endpoints it measures (loadsvc.users.python.http(...) or ws(...))"
        )
    for ref in declared:
        if ref.kind not in PROTOCOLS:
            known = ", ".join(PROTOCOLS)
            raise Invalid(f"{class_path}: endpoint {ref.endpoint!r} has protocol {ref.kind!r} "
                          f"(known: {known})")  # fmt: skip
    return tuple(declared)


def _options(node: yaml.Node) -> dict[str, Any]:
    """Any YAML mapping, as plain Python values (the class reads its own options)."""
    if not isinstance(node, yaml.MappingNode):
        raise Invalid("expected a mapping of options")
    value = yaml.SafeLoader("").construct_document(node)
    assert isinstance(value, dict)
    return value


def read(fields: Fields, uses: list[EndpointUse]) -> PythonUserSpec | None:
    """A python group: its class (imported now: a bad one is reported here), options, weight."""
    weight = fields.get("weight", integer(1), 1)
    options: dict[str, Any] = fields.get("options", _options) or {}
    base_dir = fields.reader.base_dir

    def load(node: yaml.Node) -> tuple[str, type, tuple[EndpointRef, ...]]:
        path = text()(node)
        cls, refs = import_user_class(path, base_dir)
        return path, cls, refs

    loaded = fields.get("class", load, required=True)
    if loaded is None:
        return None
    class_path, cls, refs = loaded
    node = fields.value_node("class") or fields.node
    for ref in refs:
        uses.append(EndpointUse(ref.endpoint, ref.kind, fields.at("class"), node))
    return PythonUserSpec(class_path, cls, refs, options, weight)


KIND = UserKind[PythonUserSpec](keys=_KEYS, read=read)
