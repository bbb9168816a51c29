"""Reading thresholds: defaults, scenario overrides and endpoint overrides, merged field by field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml

from loadsvc.config._nodes import Entries, Fields, Reader
from loadsvc.config._values import (
    Converter,
    Invalid,
    describe,
    duration,
    integer,
    is_null,
    join,
    number,
    suggest,
)
from loadsvc.config.durations import format_duration
from loadsvc.config.spec import (
    CONNECT_BUCKETS,
    CONNECT_TIME_DEFAULT,
    LatencyThreshold,
    ScenarioThresholds,
    StallThreshold,
    Thresholds,
    endpoint_label,
)

__all__ = [
    "EndpointOverrides",
    "LatencyOverrides",
    "ThresholdOverrides",
    "read_thresholds",
    "resolve_thresholds",
]

_THRESHOLD_KEYS = (
    "http_latency", "ws_delivery_latency", "error_ratio", "ws_delivery_rate", "ws_missed_ratio",
    "ws_stall", "ws_connect_time", "ws_reconnect_time",
)  # fmt: skip
_STALL_KEYS = ("after", "max")
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

    def apply_optional(self, base: LatencyThreshold | None) -> LatencyThreshold | None:
        """As :meth:`apply`, for a threshold that is off (None) until some level sets it."""
        if base is None and self == LatencyOverrides():
            return None
        return self.apply(base or CONNECT_TIME_DEFAULT)


@dataclass(frozen=True)
class ThresholdOverrides:
    """The threshold fields that a level (defaults, scenario, endpoint) sets."""

    http_latency: LatencyOverrides = LatencyOverrides()
    ws_delivery_latency: LatencyOverrides = LatencyOverrides()
    error_ratio: float | None = None
    ws_delivery_rate: float | None = None
    ws_missed_ratio: float | None = None
    ws_stall_after_s: float | None = None  # 0: the stall watch off
    ws_stall_max: int | None = None
    ws_connect_time: LatencyOverrides = LatencyOverrides()
    ws_reconnect_time: LatencyOverrides = LatencyOverrides()

    def apply(self, base: Thresholds) -> Thresholds:
        """``base`` with the fields set here replaced."""
        stall = base.ws_stall
        if self.ws_stall_after_s is not None:
            stall = StallThreshold(self.ws_stall_after_s or None, stall.max)
        if self.ws_stall_max is not None:
            stall = StallThreshold(stall.after_s, self.ws_stall_max)
        return Thresholds(
            http_latency=self.http_latency.apply(base.http_latency),
            ws_delivery_latency=self.ws_delivery_latency.apply(base.ws_delivery_latency),
            error_ratio=_pick(self.error_ratio, base.error_ratio),
            ws_delivery_rate=_pick(self.ws_delivery_rate, base.ws_delivery_rate),
            ws_missed_ratio=_pick(self.ws_missed_ratio, base.ws_missed_ratio),
            ws_stall=stall,
            ws_connect_time=self.ws_connect_time.apply_optional(base.ws_connect_time),
            ws_reconnect_time=self.ws_reconnect_time.apply_optional(base.ws_reconnect_time),
        )


def _pick(value: float | None, base: float) -> float:
    return base if value is None else value


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
    """Every threshold a thresholds mapping sets (see ``_THRESHOLD_KEYS``)."""
    http = _read_latency(fields, "http_latency")
    ws = _read_latency(fields, "ws_delivery_latency")
    stall = fields.section("ws_stall", _STALL_KEYS)
    after = stall_max = None
    if stall is not None:
        # after: 0 turns the stall watch off.
        after = stall.get("after", duration(allow_zero=True))
        stall_max = stall.get("max", integer(minimum=0))
    return ThresholdOverrides(
        http,
        ws,
        fields.get("error_ratio", number(0.0, 1.0)),
        # Frames per connection-second; 0 turns the floor off.
        ws_delivery_rate=fields.get("ws_delivery_rate", number(0.0)),
        # Missed per expected frame; 1 turns the judgement off.
        ws_missed_ratio=fields.get("ws_missed_ratio", number(0.0, 1.0)),
        ws_stall_after_s=after,
        ws_stall_max=stall_max,
        ws_connect_time=_read_latency(fields, "ws_connect_time", _connect_bucket()),
        ws_reconnect_time=_read_latency(fields, "ws_reconnect_time", _connect_bucket()),
    )


def _connect_bucket() -> Converter[float]:
    """A duration that is a bucket boundary of the WS connect histograms (exact alerts)."""
    read = duration()

    def convert(node: yaml.Node) -> float:
        value = read(node)
        if not any(abs(value - b) < 1e-12 for b in CONNECT_BUCKETS):
            allowed = ", ".join(format_duration(b) for b in CONNECT_BUCKETS)
            raise Invalid(
                f"must be a bucket boundary of the WS connect histograms ({allowed}), "
                f"got {format_duration(value)}"
            )
        return value

    return convert


def _read_latency(
    parent: Fields, key: str, limit: Converter[float] | None = None
) -> LatencyOverrides:
    fields = parent.section(key, _LATENCY_KEYS)
    if fields is None:
        return LatencyOverrides()
    quantile = fields.get("quantile", number(0.0, 1.0, low_open=True, high_open=True))
    # min_samples: 0 turns the no-data check off for that threshold.
    min_samples = fields.get("min_samples", integer(minimum=0))
    return LatencyOverrides(quantile, fields.get("max", limit or duration()), min_samples)
