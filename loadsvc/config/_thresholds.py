"""Reading thresholds: defaults, scenario overrides and endpoint overrides, merged field by field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml

from loadsvc.config._nodes import Entries, Fields, Reader
from loadsvc.config._values import describe, duration, integer, is_null, join, number, suggest
from loadsvc.config.spec import LatencyThreshold, ScenarioThresholds, Thresholds, endpoint_label

__all__ = [
    "EndpointOverrides",
    "LatencyOverrides",
    "ThresholdOverrides",
    "read_thresholds",
    "resolve_thresholds",
]

_THRESHOLD_KEYS = ("http_latency", "ws_delivery_latency", "error_ratio")
_SCENARIO_THRESHOLD_KEYS = (*_THRESHOLD_KEYS, "endpoints")
_LATENCY_KEYS = ("quantile", "max", "min_samples")


@dataclass(frozen=True)
class LatencyOverrides:
    """The fields of a latency threshold that a level of the configuration sets."""

    quantile: float | None = None
    max_s: float | None = None
    min_samples: int | None = None

    def apply(self, base: LatencyThreshold) -> LatencyThreshold:
        """``base`` with the fields set here replaced."""
        return LatencyThreshold(
            quantile=base.quantile if self.quantile is None else self.quantile,
            max_s=base.max_s if self.max_s is None else self.max_s,
            min_samples=base.min_samples if self.min_samples is None else self.min_samples,
        )


@dataclass(frozen=True)
class ThresholdOverrides:
    """The threshold fields that a level (defaults, scenario, endpoint) sets."""

    http_latency: LatencyOverrides = LatencyOverrides()
    ws_delivery_latency: LatencyOverrides = LatencyOverrides()
    error_ratio: float | None = None

    def apply(self, base: Thresholds) -> Thresholds:
        """``base`` with the fields set here replaced."""
        return Thresholds(
            http_latency=self.http_latency.apply(base.http_latency),
            ws_delivery_latency=self.ws_delivery_latency.apply(base.ws_delivery_latency),
            error_ratio=base.error_ratio if self.error_ratio is None else self.error_ratio,
        )


@dataclass(frozen=True)
class EndpointOverrides:
    """The overrides of one ``thresholds.endpoints`` entry, with its place in the file."""

    endpoint: str
    path: str
    key_node: yaml.Node
    overrides: ThresholdOverrides = field(default_factory=ThresholdOverrides)


def read_thresholds(
    reader: Reader, node: yaml.Node, path: str, *, per_scenario: bool
) -> tuple[ThresholdOverrides, tuple[EndpointOverrides, ...]]:
    """Read a ``thresholds`` mapping; ``endpoints`` is allowed only ``per_scenario``."""
    keys = _SCENARIO_THRESHOLD_KEYS if per_scenario else _THRESHOLD_KEYS
    fields = reader.mapping(node, path, keys, null_is_empty=True)
    if fields is None:
        return ThresholdOverrides(), ()
    overrides = _read_levels(fields)
    endpoints: list[EndpointOverrides] = []
    table_node = fields.value_node("endpoints")
    table = (
        None if table_node is None else _endpoint_table(reader, table_node, fields.at("endpoints"))
    )
    for name, (key_node, value_node) in (table or {}).items():
        entry_path = join(fields.at("endpoints"), name)
        entry = reader.mapping(value_node, entry_path, _THRESHOLD_KEYS, null_is_empty=True)
        if entry is not None:
            endpoints.append(EndpointOverrides(name, entry_path, key_node, _read_levels(entry)))
    return overrides, tuple(endpoints)


def _endpoint_table(reader: Reader, node: yaml.Node, path: str) -> Entries | None:
    if is_null(node):
        return None
    if not isinstance(node, yaml.MappingNode):
        reader.error(
            path, node, f"expected a mapping of endpoint to thresholds, got {describe(node)}"
        )
        return None
    return reader.entries(node, path)


def resolve_thresholds(
    reader: Reader,
    base: Thresholds,
    overrides: ThresholdOverrides,
    endpoints: Sequence[EndpointOverrides],
    known: Sequence[str] | None,
) -> ScenarioThresholds:
    """Merge scenario overrides over ``base``, and endpoint overrides over the result.

    ``known`` are the endpoint labels the scenario measures (None: unknown because
    its users did not read cleanly, so endpoint names are not checked).
    """
    default = overrides.apply(base)
    resolved: list[tuple[str, Thresholds]] = []
    for entry in endpoints:
        if known is not None and entry.endpoint not in known:
            reader.error(entry.path, entry.key_node, _unknown_endpoint(entry.endpoint, known))
            continue
        resolved.append((entry.endpoint, entry.overrides.apply(default)))
    return ScenarioThresholds(default=default, endpoints=tuple(resolved))


def _unknown_endpoint(name: str, known: Sequence[str]) -> str:
    label = endpoint_label(name)
    if label != name and label in known:
        hint = f" (endpoints are named without the query string: {label!r})"
    else:
        hint = suggest(name, known)
    names = ", ".join(known) or "none"
    return f"unknown endpoint {name!r}{hint}; this scenario measures: {names}"


def _read_levels(fields: Fields) -> ThresholdOverrides:
    """The ``http_latency``, ``ws_delivery_latency`` and ``error_ratio`` of a thresholds mapping."""
    http = _read_latency(fields, "http_latency")
    ws = _read_latency(fields, "ws_delivery_latency")
    return ThresholdOverrides(http, ws, fields.get("error_ratio", number(0.0, 1.0)))


def _read_latency(parent: Fields, key: str) -> LatencyOverrides:
    fields = parent.section(key, _LATENCY_KEYS)
    if fields is None:
        return LatencyOverrides()
    quantile = fields.get("quantile", number(0.0, 1.0, low_open=True, high_open=True))
    # min_samples: 0 turns the no-data check off for that threshold.
    min_samples = fields.get("min_samples", integer(minimum=0))
    return LatencyOverrides(quantile, fields.get("max", duration()), min_samples)
