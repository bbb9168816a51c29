"""Frozen, validated specifications: what a configuration file means.

Specs are pure data. They are built once by :mod:`loadsvc.config.load`, which
validates every field and reports every error with its place in the file;
nothing downstream re-validates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

# --- thresholds -------------------------------------------------------------


@dataclass(frozen=True)
class LatencyThreshold:
    """A latency quantile that must stay at or below ``max_s``.

    ``max_s`` is always a histogram bucket boundary, so "the quantile is at
    most max_s" is exactly "at least ``quantile`` of observations are <= max_s".
    """

    quantile: float
    max_s: float
    # Fewer samples than this in a run or window is judged ``no_data``: a failure, never a pass.
    min_samples: int = 1

    @property
    def label(self) -> str:
        """The short name, e.g. ``p95``."""
        q = self.quantile * 100
        return f"p{q:g}".replace(".", "_")


@dataclass(frozen=True)
class Thresholds:
    """The thresholds one endpoint is judged by."""

    http_latency: LatencyThreshold = LatencyThreshold(0.95, 0.2)
    ws_delivery_latency: LatencyThreshold = LatencyThreshold(0.99, 0.1)
    error_ratio: float = 0.01

    def latency_for(
        self, kind: Literal["http", "ws"]
    ) -> tuple[Literal["http_latency", "ws_delivery_latency"], LatencyThreshold]:
        """The latency threshold (its name and value) an endpoint of ``kind`` is judged by."""
        if kind == "http":
            return "http_latency", self.http_latency
        return "ws_delivery_latency", self.ws_delivery_latency

    def limits_for(self, kind: Literal["http", "ws"]) -> dict[str, float]:
        """Every threshold of an endpoint of ``kind`` by name: seconds, or a ratio."""
        name, latency = self.latency_for(kind)
        return {name: latency.max_s, "error_ratio": self.error_ratio}


@dataclass(frozen=True)
class ScenarioThresholds:
    """Thresholds of a scenario: its defaults and per-endpoint overrides."""

    default: Thresholds = Thresholds()
    endpoints: tuple[tuple[str, Thresholds], ...] = ()

    def for_endpoint(self, endpoint: str) -> Thresholds:
        """The thresholds that apply to ``endpoint`` (its label)."""
        for name, thresholds in self.endpoints:
            if name == endpoint:
                return thresholds
        return self.default

    def all(self) -> tuple[Thresholds, ...]:
        """Every distinct threshold set in use (for bucket boundaries)."""
        return (self.default, *(t for _, t in self.endpoints))


# --- load shapes ------------------------------------------------------------


@dataclass(frozen=True)
class ConstantShapeSpec:
    """``users`` users for ``duration_s`` (None: until stopped), started at ``spawn_rate``/s."""

    users: int
    duration_s: float | None
    spawn_rate: float | None = None
    kind: Literal["constant"] = "constant"


@dataclass(frozen=True)
class Stage:
    """Ramp linearly to ``target`` users over ``duration_s``."""

    duration_s: float
    target: int


@dataclass(frozen=True)
class RampingShapeSpec:
    """Linear ramps between stage targets, starting from ``start_users`` (k6's ramping-vus)."""

    stages: tuple[Stage, ...]
    start_users: int = 0
    kind: Literal["ramping"] = "ramping"


ShapeSpec = ConstantShapeSpec | RampingShapeSpec


# --- user kinds ---------------------------------------------------------------


@dataclass(frozen=True)
class HttpTaskSpec:
    """One weighted REST request a REST user makes.

    ``path`` may carry a query string (``/api/market/alerts?limit=50``);
    ``endpoint`` is the metric label: the route without the query string.
    """

    path: str
    endpoint: str
    method: str = "GET"
    weight: int = 1
    expect_status: tuple[int, ...] = (200,)
    required_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class RestUserSpec:
    """A REST user: weighted tasks, paced (open, coordinated-omission-safe) or with think time.

    Exactly one of ``pacing_s`` (one request every ``pacing_s``, latency from the
    intended start) and ``think_time_s`` (closed model: wait uniform(min, max)
    after each response, latency from the send) is set.

    ``max_body`` caps a response body as sent and ``max_decompressed`` once
    decoded (bytes); past either the request counts as ``too_large``.
    """

    tasks: tuple[HttpTaskSpec, ...]
    pacing_s: float | None = None
    think_time_s: tuple[float, float] | None = None
    weight: int = 1
    timeout_s: float = 10.0
    max_body: int = 10 * 1024 * 1024
    max_decompressed: int = 50 * 1024 * 1024
    kind: Literal["rest"] = "rest"


@dataclass(frozen=True)
class WsMessageSpec:
    """How a WS user reads and validates the frames of a stream."""

    required_keys: tuple[str, ...] = ()
    type_field: str = "type"
    # Frames of these types are counted (outcome "status") but neither validated nor timed.
    skip_types: tuple[str, ...] = ("status",)
    timestamp_field: str | None = "published_at"
    timestamp_unit: Literal["s", "ms"] = "s"
    sequence_field: str | None = "seq"
    # A publish stamp later than the arrival by up to this much is timed as 0 (clocks kept
    # in step by NTP differ by a few ms); beyond it the frame is "skewed" and not timed.
    clock_tolerance_s: float = 0.01


@dataclass(frozen=True)
class WsBackoffSpec:
    """Jittered exponential backoff between reconnect attempts after a failure."""

    initial_s: float = 0.1
    max_s: float = 5.0
    multiplier: float = 2.0


@dataclass(frozen=True)
class WsStreamUserSpec:
    """A WS client that connects to ``path`` and receives continuously."""

    path: str
    endpoint: str
    message: WsMessageSpec = WsMessageSpec()
    weight: int = 1
    connect_timeout_s: float = 10.0
    backoff: WsBackoffSpec = WsBackoffSpec()
    kind: Literal["ws_stream"] = "ws_stream"


@dataclass(frozen=True)
class WsReconnectUserSpec:
    """A WS client in a reconnect storm.

    On every ``cycle_s`` boundary of the scenario's clock (so all users act
    together) it receives ``messages_per_cycle`` frames, then disconnects and
    reconnects at once; the reconnect time is measured. Between storms it keeps
    reading.
    """

    path: str
    endpoint: str
    cycle_s: float = 10.0
    messages_per_cycle: int = 3
    message: WsMessageSpec = WsMessageSpec()
    weight: int = 1
    connect_timeout_s: float = 10.0
    backoff: WsBackoffSpec = WsBackoffSpec()
    kind: Literal["ws_reconnect"] = "ws_reconnect"


UserSpec = RestUserSpec | WsStreamUserSpec | WsReconnectUserSpec
WsUserSpec = WsStreamUserSpec | WsReconnectUserSpec


# --- schedules ------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleSpec:
    """When ``loadsvc serve`` runs a scenario.

    - ``continuous``: always running, restarted with backoff when it ends or fails;
      its verdict is judged every ``verdict_every_s``.
    - ``interval``: every ``every_s``.
    - ``cron``: a five-field crontab expression in ``timezone``.
    - ``manual``: only when triggered through the API.
    """

    kind: Literal["continuous", "interval", "cron", "manual"] = "manual"
    every_s: float | None = None
    cron: str | None = None
    timezone: str = "UTC"
    verdict_every_s: float = 300.0

    def describe(self) -> str:
        """A one-line human description."""
        if self.kind == "interval":
            return f"every {self.every_s:g}s"
        if self.kind == "cron":
            return f"cron {self.cron!r} {self.timezone}"
        return self.kind


# --- scenarios and the whole configuration ---------------------------------


def endpoint_label(path: str) -> str:
    """The metric label of a request path: the route without a query string."""
    return urlsplit(path).path or "/"


@dataclass(frozen=True)
class EndpointRef:
    """One endpoint a scenario measures: its label and its protocol."""

    endpoint: str
    kind: Literal["http", "ws"]
    method: str = ""


@dataclass(frozen=True)
class ScenarioSpec:
    """A named load scenario: who (user groups with weights), how many over time, how judged."""

    name: str
    shape: ShapeSpec
    users: tuple[UserSpec, ...]
    schedule: ScheduleSpec = ScheduleSpec()
    thresholds: ScenarioThresholds = ScenarioThresholds()
    description: str = ""
    graceful_stop_s: float = 5.0

    def endpoints(self) -> tuple[EndpointRef, ...]:
        """Every endpoint this scenario measures, in configuration order, without repeats."""
        seen: dict[tuple[str, str, str], EndpointRef] = {}
        for user in self.users:
            if isinstance(user, RestUserSpec):
                for task in user.tasks:
                    ref = EndpointRef(task.endpoint, "http", task.method)
                    seen.setdefault((ref.kind, ref.endpoint, ref.method), ref)
            else:
                ref = EndpointRef(user.endpoint, "ws")
                seen.setdefault((ref.kind, ref.endpoint, ref.method), ref)
        return tuple(seen.values())

    def total_weight(self) -> int:
        """Sum of the user groups' weights."""
        return sum(u.weight for u in self.users)


@dataclass(frozen=True)
class ServiceSpec:
    """Settings of ``loadsvc serve`` that are not about load."""

    history_file: str = "loadsvc-runs.jsonl"
    history_max_bytes: int = 10 * 1024 * 1024
    history_max_age_s: float = 30 * 24 * 3600.0
    stop_timeout_s: float = 10.0
    log_interval_s: float = 10.0


@dataclass(frozen=True)
class Config:
    """A whole validated configuration."""

    scenarios: tuple[ScenarioSpec, ...]
    service: ServiceSpec = field(default_factory=ServiceSpec)
    source: str = "<default>"

    def scenario(self, name: str) -> ScenarioSpec:
        """The scenario called ``name``; KeyError names the known ones."""
        for s in self.scenarios:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.scenarios)
        raise KeyError(f"no scenario {name!r} in {self.source} (known: {known})")

    def latency_boundaries(self) -> tuple[float, ...]:
        """Every latency threshold in the configuration, for histogram buckets."""
        out: set[float] = set()
        for s in self.scenarios:
            for t in s.thresholds.all():
                out.add(t.http_latency.max_s)
                out.add(t.ws_delivery_latency.max_s)
        return tuple(sorted(out))
