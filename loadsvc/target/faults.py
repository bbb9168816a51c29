"""Fault injection state of the reference target, and validation of `POST /admin/faults`.

A body is validated as a whole (every error is reported, nothing is applied if any is found)
and then merged into the current faults: per-path maps merge path by path (`null` or 0 removes
a path), `stall` replaces the stalled set, and `drop_connections` is a one-shot action that
the app performs and that is never stored.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any, Final

from loadsvc.target.paths import KNOWN_PATHS, WS_PATHS

JsonObject = dict[str, Any]

_MAX_DELAY_MS: Final = 600_000.0

# Which paths each per-path key accepts: frame-level faults only make sense on WS paths.
_PATHS_FOR_KEY: Final[dict[str, tuple[str, ...]]] = {
    "latency_ms": KNOWN_PATHS,
    "error_ratio": KNOWN_PATHS,
    "ws_delay_ms": WS_PATHS,
    "malformed_ratio": WS_PATHS,
    "drop_connections": WS_PATHS,
}
_DELAY_KEYS: Final = frozenset({"latency_ms", "ws_delay_ms"})
FAULT_KEYS: Final[tuple[str, ...]] = (*_PATHS_FOR_KEY, "stall")


class InvalidFaults(ValueError):
    """A fault body that cannot be applied; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class FaultUpdate:
    """A validated `POST /admin/faults` body. `None` values remove a path's fault."""

    per_path: dict[str, dict[str, float | None]] = field(default_factory=dict)
    stall: frozenset[str] | None = None
    drop_connections: dict[str, float] = field(default_factory=dict)


def _check_value(key: str, path: str, value: object) -> str | None:
    where = f"{key}[{path!r}]"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{where} must be a finite number, got {value!r}"
    if key in _DELAY_KEYS:
        if not 0 <= value <= _MAX_DELAY_MS:
            return f"{where} must be between 0 and {_MAX_DELAY_MS:.0f} ms, got {value!r}"
    elif not 0 <= value <= 1:
        return f"{where} must be a ratio between 0 and 1, got {value!r}"
    return None


def _check_path(key: str, path: object) -> str | None:
    allowed = _PATHS_FOR_KEY.get(key, KNOWN_PATHS)
    if isinstance(path, str) and path in allowed:
        return None
    return f"{key}: unknown path {path!r}, expected one of {', '.join(allowed)}"


def parse_fault_update(body: object) -> FaultUpdate:
    """Validate a `POST /admin/faults` body; raise `InvalidFaults` with every error found."""
    if not isinstance(body, dict):
        raise InvalidFaults([f"body must be a JSON object, got {type(body).__name__}"])
    errors: list[str] = []
    per_path: dict[str, dict[str, float | None]] = {}
    drop: dict[str, float] = {}
    stall: frozenset[str] | None = None
    for key, value in body.items():
        if key == "stall":
            if not isinstance(value, list):
                errors.append(f"stall must be a list of paths, got {value!r}")
                continue
            path_errors = [e for e in (_check_path(key, p) for p in value) if e]
            errors.extend(path_errors)
            if not path_errors:
                stall = frozenset(value)
        elif key in _PATHS_FOR_KEY:
            if not isinstance(value, dict):
                errors.append(f"{key} must be an object mapping path to value, got {value!r}")
                continue
            entries: dict[str, float | None] = {}
            for path, amount in value.items():
                error = _check_path(key, path)
                if error is None and not (amount is None and key != "drop_connections"):
                    error = _check_value(key, path, amount)
                if error:
                    errors.append(error)
                else:
                    entries[path] = None if amount is None else float(amount)
            if key == "drop_connections":
                drop = {path: amount for path, amount in entries.items() if amount is not None}
            else:
                per_path[key] = entries
        else:
            errors.append(f"unknown fault key {key!r}, expected one of {', '.join(FAULT_KEYS)}")
    if errors:
        raise InvalidFaults(errors)
    return FaultUpdate(per_path=per_path, stall=stall, drop_connections=drop)


class FaultState:
    """The faults in force, queried by the request handlers and the publishers."""

    def __init__(self) -> None:
        self._per_path: dict[str, dict[str, float]] = {key: {} for key in _PATHS_FOR_KEY}
        del self._per_path["drop_connections"]
        self._stalled: frozenset[str] = frozenset()
        # Replaced (after being set) whenever the stalled set changes, so that held requests
        # wake up and re-check whether their path is still stalled.
        self._stall_changed = asyncio.Event()

    def apply(self, update: FaultUpdate) -> None:
        """Merge a validated update into the current faults."""
        for key, entries in update.per_path.items():
            current = self._per_path[key]
            for path, amount in entries.items():
                if amount:
                    current[path] = amount
                else:
                    current.pop(path, None)
        if update.stall is not None:
            self._set_stalled(update.stall)

    def clear(self) -> None:
        """Remove every fault and release every held request."""
        for current in self._per_path.values():
            current.clear()
        self._set_stalled(frozenset())

    def _set_stalled(self, stalled: frozenset[str]) -> None:
        if stalled != self._stalled:
            self._stalled = stalled
            self._stall_changed.set()
            self._stall_changed = asyncio.Event()

    def to_json(self) -> JsonObject:
        """The faults in force, in the shape that `POST /admin/faults` accepts."""
        faults: JsonObject = {key: dict(entries) for key, entries in self._per_path.items()}
        faults["stall"] = sorted(self._stalled)
        return faults

    def latency_s(self, path: str) -> float:
        """Added delay before answering a REST request or a WS handshake on `path`."""
        return self._per_path["latency_ms"].get(path, 0.0) / 1000.0

    def error_ratio(self, path: str) -> float:
        """Fraction of requests (REST: 500) or handshakes (WS: 503) on `path` that fail."""
        return self._per_path["error_ratio"].get(path, 0.0)

    def ws_delay_s(self, path: str) -> float:
        """Delay between stamping a frame at publish and handing it to the clients' queues."""
        return self._per_path["ws_delay_ms"].get(path, 0.0) / 1000.0

    def malformed_ratio(self, path: str) -> float:
        """Fraction of published frames on `path` that are sent as non-JSON text."""
        return self._per_path["malformed_ratio"].get(path, 0.0)

    def is_stalled(self, path: str) -> bool:
        """Whether `path` publishes nothing (WS) or holds its requests (REST)."""
        return path in self._stalled

    async def wait_unstalled(self, path: str) -> None:
        """Return once `path` is not stalled (at once if it is not)."""
        while path in self._stalled:
            await self._stall_changed.wait()
