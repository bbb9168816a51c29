"""Where the fields of a WS frame are: a partial decoder built from field paths.

A path such as ``d.seq`` names a field inside an object (a dot separates the levels). The
decoder is a tree of msgspec structs with one field per configured path segment: only
those are read, and the rest of a frame (thousands of quotes) is scanned but never turned
into Python objects. The same structs read JSON and msgpack, so a binary frame is judged
exactly as a text one.

Leaves are typed by their role: the publish stamp a number (``s``/``ms``/``us``/``ns``) or
an RFC 3339 string with a zone (or a msgpack timestamp), the sequence number an integer,
everything else a raw slice (``msgspec.Raw``), whose emptiness says the field is absent.
An object on a path that is absent reads as an empty object (every leaf under it absent);
one that is not an object (``null``, a list) makes the frame ``invalid``.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import orjson

from loadsvc.config.spec import WsMessageSpec

__all__ = ["ABSENT", "FrameLayout", "Getter", "encodings", "frame_layout", "raw_value"]

ABSENT = msgspec.Raw()
Getter = Callable[[Any], Any]

# A zone is required: a stamp without one cannot be placed on a clock (the frame is invalid).
_Rfc3339 = Annotated[datetime.datetime, msgspec.Meta(tz=True)]
_STAMP_TYPES: Mapping[str, Any] = {
    "rfc3339": _Rfc3339 | None,
    **{unit: float | None for unit in ("s", "ms", "us", "ns")},
}
_SCALES: Mapping[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "rfc3339": 1.0}


class DecodeMemo:
    """The latest text frame decoded by a layout's readers and what it decoded to.

    Shared by the readers of a layout: a broadcast's frame reaches each of them as the same
    str (:mod:`loadsvc.users.wsconn` hands equal bytes the str it decoded first), so it is
    parsed once, and its fields read once, not once per connection. Keyed by identity: the
    memo holds the str, so no other object can have its id meanwhile. The decoded frame is
    only read, never changed.
    """

    __slots__ = ("facts", "frame", "raw")

    def __init__(self) -> None:
        self.raw: str | None = None
        self.frame: Any = None
        # What the frame says whichever connection it came on (its type skipped or not, its
        # sequence number, its outcome before timing, its stamp): read once, by the first
        # reader that needs it (loadsvc.users.frames.FrameReader).
        self.facts: Any = None


@dataclass(frozen=True)
class FrameLayout:
    """The decoders of one stream's frames and how to read each configured field of one.

    ``stamp`` gives the stamp (None: absent) in units of ``scale`` seconds, ``seq`` an int or
    None, ``kind``, ``key`` and the ``raw`` paths a ``msgspec.Raw`` (empty: absent);
    ``required`` must be present and not null, ``present`` present (null allowed). Each of
    the two reads all its keys in one call, as a tuple; None when it has no keys (a call
    saved per frame). ``typed_required``: some required key is read typed (the stamp or the
    sequence number), so absent reads as None there rather than as an empty raw slice.
    """

    json: msgspec.json.Decoder[Any]
    msgpack: msgspec.msgpack.Decoder[Any]
    kind: Getter
    stamp: Getter | None
    scale: float
    seq: Getter | None
    key: Getter | None
    required: Callable[[Any], tuple[Any, ...]] | None
    present: Callable[[Any], tuple[Any, ...]] | None
    typed_required: bool
    raw: Mapping[str, Getter]
    memo: DecodeMemo = field(default_factory=DecodeMemo, compare=False)


class _Node:
    """One object level of the frame: its fields by key (a leaf type, or a deeper level)."""

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.leaves: dict[str, Any] = {}  # key -> type of a leaf at this level

    def add(self, path: str, typ: Any) -> None:
        *parents, last = path.split(".")
        node = self
        for part in parents:
            node = node.children.setdefault(part, _Node())
        # The first role to claim a path types it (typed roles are added first).
        node.leaves.setdefault(last, typ)


def _chains(node: _Node, prefix: str, chain: str, out: dict[str, str], counter: Any) -> Any:
    """The struct type of ``node`` (recursively), ``out`` filled with each path's attribute
    chain (``f3.f7``) from the root."""
    fields: list[tuple[str, Any, Any]] = []
    for key in dict.fromkeys([*node.leaves, *node.children]):
        attr = f"f{next(counter)}"
        path, here = f"{prefix}{key}", f"{chain}{attr}"
        out[path] = here
        if key in node.children:
            child = _chains(node.children[key], f"{path}.", f"{here}.", out, counter)
            fields.append((attr, child, msgspec.field(default=child(), name=key)))
        else:
            typ = node.leaves[key]
            default = ABSENT if typ is msgspec.Raw else None
            fields.append((attr, typ, msgspec.field(default=default, name=key)))
    # gc=False: a decoded frame holds no containers, so the cyclic GC need not track it;
    # nested levels are frozen so that an empty one can be the default of an absent object.
    name = "Frame" if not prefix else "Frame_" + prefix.rstrip(".").replace(".", "_")
    return msgspec.defstruct(name, fields, kw_only=True, gc=False, frozen=bool(prefix))


def _getter(chain: str) -> Getter:
    return operator.attrgetter(chain)


def _tuple_getter(
    getters: list[Getter], chains: list[str]
) -> Callable[[Any], tuple[Any, ...]] | None:
    """All of a frame's values for ``chains`` (plain attributes) and ``getters``, as a tuple,
    in one C call where it can: this runs per frame. None when there are none to read."""
    if getters:
        plain = [_getter(c) for c in chains]
        every = (*plain, *getters)
        return lambda frame: tuple(get(frame) for get in every)
    if not chains:
        return None
    if len(chains) == 1:
        one = _getter(chains[0])
        return lambda frame: (one(frame),)
    return operator.attrgetter(*chains)


def _presence(chain: str, empty: Any) -> Getter:
    """A required key that is an object holding other configured fields: absent when it is
    the empty default object."""
    get = operator.attrgetter(chain)

    def read(frame: Any) -> Any:
        value = get(frame)
        return ABSENT if value is empty else value

    return read


def _stamp_getter(chain: str, unit: str) -> Getter:
    """The stamp as read: a number in ``unit`` (the reader scales it), or for RFC 3339 the
    seconds since the epoch."""
    get = operator.attrgetter(chain)
    if unit != "rfc3339":
        return get

    def seconds(frame: Any) -> float | None:
        stamp = get(frame)
        return None if stamp is None else float(stamp.timestamp())

    return seconds


@functools.cache
def frame_layout(spec: WsMessageSpec, raw_paths: tuple[str, ...] = ()) -> FrameLayout:
    """The layout of frames of ``spec``, also reading ``raw_paths`` (what a conversation
    matches and copies into replies) as raw values.

    Cached: the users of a group share one (struct types and decoders are a few KB, which
    at thousands of connections is a noticeable part of the memory per connection).
    """
    root = _Node()
    # Typed roles first: a path that is also a required key keeps its type.
    if spec.timestamp_field is not None:
        root.add(spec.timestamp_field, _STAMP_TYPES[spec.timestamp_unit])
    if spec.sequence_field is not None:
        root.add(spec.sequence_field, int | None)
    for path in (spec.type_field, spec.sequence_key, *spec.required_keys, *raw_paths):
        if path is not None:
            root.add(path, msgspec.Raw)
    for path in (spec.timestamp_field, spec.sequence_field, spec.type_field, spec.sequence_key,
                 *raw_paths):  # fmt: skip
        if path is not None and _is_parent(root, path):
            raise ValueError(f"{path!r} holds other fields: it cannot be read as a value")
    chains: dict[str, str] = {}
    frame_type = _chains(root, "", "", chains, itertools.count())

    def fields_of(paths: list[str]) -> Callable[[Any], tuple[Any, ...]] | None:
        nested = [p for p in paths if _is_parent(root, p)]
        # The empty object an absent nested ``path`` reads as: the default one, shared.
        getters = [
            _presence(chains[p], operator.attrgetter(chains[p])(frame_type())) for p in nested
        ]
        return _tuple_getter(getters, [chains[p] for p in paths if p not in nested])

    nullable = frozenset(spec.nullable_keys)
    strict = [k for k in spec.required_keys if k not in nullable]
    typed = (spec.timestamp_field, spec.sequence_field)
    return FrameLayout(
        json=msgspec.json.Decoder(frame_type),
        msgpack=msgspec.msgpack.Decoder(frame_type),
        kind=_getter(chains[spec.type_field]),
        stamp=None
        if spec.timestamp_field is None
        else _stamp_getter(chains[spec.timestamp_field], spec.timestamp_unit),
        scale=_SCALES[spec.timestamp_unit],
        seq=None if spec.sequence_field is None else _getter(chains[spec.sequence_field]),
        key=None if spec.sequence_key is None else _getter(chains[spec.sequence_key]),
        required=fields_of(strict),
        present=fields_of([k for k in spec.required_keys if k in nullable]),
        typed_required=any(k in typed for k in strict),
        raw={path: _getter(chains[path]) for path in raw_paths},
    )


def _is_parent(root: _Node, path: str) -> bool:
    node = root
    for part in path.split("."):
        child = node.children.get(part)
        if child is None:
            return False
        node = child
    return True


def encodings(value: object) -> tuple[msgspec.Raw, ...]:
    """How a backend may encode ``value`` (a match value) in a frame: compact JSON, JSON with
    ASCII escapes, msgpack. Matching compares raw slices, so nothing is decoded per frame."""
    forms = {orjson.dumps(value), json.dumps(value).encode(), msgspec.msgpack.encode(value)}
    return tuple(msgspec.Raw(f) for f in sorted(forms))


def raw_value(raw: Any, msgpack: bool) -> Any:
    """The Python value of a raw slice of a frame (None when absent); a field read typed
    (the stamp, the sequence number) is already one."""
    if type(raw) is not msgspec.Raw:
        return raw.isoformat() if isinstance(raw, datetime.datetime) else raw
    if not raw:
        return None
    return msgspec.msgpack.decode(raw) if msgpack else msgspec.json.decode(raw)
