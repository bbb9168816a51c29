"""Frozen, validated specifications: what a configuration file means.

Specs are pure data. They are built once by :mod:`loadsvc.config.load`, which
validates every field and reports every error with its place in the file;
nothing downstream re-validates them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Literal

# Each user kind's spec lives in its module in loadsvc.config.kinds; re-exported here.
from loadsvc.config.kinds import FRAME as FRAME
from loadsvc.config.kinds import EndpointRef as EndpointRef
from loadsvc.config.kinds import HttpTaskSpec as HttpTaskSpec
from loadsvc.config.kinds import RestUserSpec as RestUserSpec
from loadsvc.config.kinds import UserSpec as UserSpec
from loadsvc.config.kinds import WsAckSpec as WsAckSpec
from loadsvc.config.kinds import WsBackoffSpec as WsBackoffSpec
from loadsvc.config.kinds import WsConversationSpec as WsConversationSpec
from loadsvc.config.kinds import WsHeartbeatSpec as WsHeartbeatSpec
from loadsvc.config.kinds import WsMatch as WsMatch
from loadsvc.config.kinds import WsMessageSpec as WsMessageSpec
from loadsvc.config.kinds import WsPeriodicSpec as WsPeriodicSpec
from loadsvc.config.kinds import WsReconnectUserSpec as WsReconnectUserSpec
from loadsvc.config.kinds import WsStreamUserSpec as WsStreamUserSpec
from loadsvc.config.kinds import WsUserSpec as WsUserSpec
from loadsvc.config.kinds import endpoint_label as endpoint_label
from loadsvc.protocols import PROTOCOLS, WS, JudgedEndpoint, judged_endpoint, limits_of

if TYPE_CHECKING:  # it reads DataSpec from here
    from loadsvc.config._login import LoginSpec

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


# The buckets of the WS connect and reconnect histograms. A connect or reconnect time limit
# must be one of them, so that the verdict and the alert rule judge the same thing exactly.
CONNECT_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


# What a connect or reconnect time threshold set only in part starts from.
CONNECT_TIME_DEFAULT = LatencyThreshold(0.95, 10.0, min_samples=0)


@dataclass(frozen=True)
class StallThreshold:
    """A WS connection silent (no data frame) for longer than ``after_s`` is *stalled*.

    The one definition of "stalled" (:meth:`is_stall`): the WS user counts each
    silence once when it passes ``after_s``, the run goes on, and a run or window
    with more than ``max`` stalls fails. ``after_s`` None: connections are not watched.
    """

    after_s: float | None = None
    max: int = 0

    def is_stall(self, silent_s: float) -> bool:
        """Whether a connection silent for ``silent_s`` seconds is stalled."""
        return self.after_s is not None and silent_s > self.after_s


@dataclass(frozen=True)
class Thresholds:
    """The thresholds one endpoint is judged by.

    The WS stream judgements are off at their defaults (no rate floor, any missed
    share, no stall watch, connect and reconnect times not required): what a
    stream should deliver depends on the backend, so the shipped configuration
    sets them from the seed's throttle.
    """

    http_latency: LatencyThreshold = LatencyThreshold(0.95, 0.2)
    ws_delivery_latency: LatencyThreshold = LatencyThreshold(0.99, 0.1)
    error_ratio: float = 0.01
    # Data frames per connection-second at least (0: not judged).
    ws_delivery_rate: float = 0.0
    # Missed frames per expected frame (missed + delivered) at most (1: not judged).
    ws_missed_ratio: float = 1.0
    ws_stall: StallThreshold = StallThreshold()
    # Every WS connect (TCP + handshake), and from losing a connection to the next one open
    # (None: not judged).
    ws_connect_time: LatencyThreshold | None = None
    ws_reconnect_time: LatencyThreshold | None = None

    def stream_limits(self) -> dict[str, float]:
        """The WS stream judgements that are on, by name, with their limits."""
        judged = limits_of(WS, self, sequenced=True)[0]
        return {k: v for k, v in judged.items() if k not in (WS.latency.name, "error_ratio")}


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
# Pure functions of elapsed time, no asyncio: tested without running anything.


@dataclass(frozen=True)
class ConstantShapeSpec:
    """``users`` users for ``duration_s`` (None: until stopped), started at ``spawn_rate``/s."""

    users: int
    duration_s: float | None
    spawn_rate: float | None = None
    kind: Literal["constant"] = "constant"

    def duration(self) -> float | None:
        """The planned length of a run in seconds; None when it runs until stopped."""
        return self.duration_s

    def peak(self) -> int:
        """The most users the shape ever asks for."""
        return self.users

    def users_at(self, elapsed: float) -> int:
        """Users the shape asks for ``elapsed`` seconds into a run (0 once it is over)."""
        if elapsed < 0 or (self.duration_s is not None and elapsed >= self.duration_s):
            return 0
        if self.spawn_rate:
            # +1: the first user starts at once rather than after 1/spawn_rate seconds.
            return min(self.users, math.floor(self.spawn_rate * elapsed) + 1)
        return self.users

    def scaled(self, users: int) -> ConstantShapeSpec:
        """The same shape with ``users`` users (``loadsvc run --users``)."""
        return replace(self, users=users)


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

    def duration(self) -> float:
        """The planned length of a run in seconds: the stages end to end."""
        return sum(s.duration_s for s in self.stages)

    def peak(self) -> int:
        """The most users the shape ever asks for."""
        return max([self.start_users, *(s.target for s in self.stages)])

    def users_at(self, elapsed: float) -> int:
        """Users the shape asks for ``elapsed`` seconds into a run (0 once it is over)."""
        if elapsed < 0:
            return 0
        level = float(self.start_users)
        t0 = 0.0
        for stage in self.stages:
            if elapsed < t0 + stage.duration_s:
                frac = (elapsed - t0) / stage.duration_s
                return round(level + (stage.target - level) * frac)
            t0 += stage.duration_s
            level = float(stage.target)
        return 0

    def scaled(self, users: int) -> RampingShapeSpec:
        """The same ramps with the peak scaled to ``users`` (``loadsvc run --users``)."""
        peak = self.peak()
        if peak == 0:
            return self

        def scale(n: int) -> int:
            return round(n * users / peak)

        return replace(
            self,
            start_users=scale(self.start_users),
            stages=tuple(Stage(s.duration_s, scale(s.target)) for s in self.stages),
        )


ShapeSpec = ConstantShapeSpec | RampingShapeSpec


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


# --- baselines --------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """How far past the baseline's median a value must be: both margins at once."""

    relative: float  # e.g. 0.5: +50 % (a drop of 50 % for rates)
    absolute: float  # in the metric's unit in the summary JSON: ms, a ratio, msg/s


@dataclass(frozen=True)
class BaselinePolicy:
    """How a scenario's baseline is chosen and how far a run may stray from it.

    Not part of what makes runs comparable: changing a tolerance keeps the baseline.
    """

    enabled: bool = True  # False: runs are not judged against their past at all
    runs: int = 7  # the baseline is the median of the last this many comparable runs
    min_runs: int = 3  # fewer: "no baseline yet", never an alarm
    same_time_of_day: bool = False  # continuous: the same window of previous days
    time_of_day_slack_s: float = 900.0  # how far from the same time a previous day's window may be
    alpha: float = 0.001  # significance of the test on the run's own samples
    latency: Tolerance = Tolerance(0.5, 10.0)
    error_ratio: Tolerance = Tolerance(1.0, 0.005)
    message_rate: Tolerance = Tolerance(0.2, 0.2)
    reconnect: Tolerance = Tolerance(0.5, 50.0)
    missed: Tolerance = Tolerance(1.0, 0.005)


# --- scenarios and the whole configuration ---------------------------------


DataOrder = Literal["round_robin", "unique", "random"]


@dataclass(frozen=True)
class DataSpec:
    """Per-user values of a scenario (its ``data``): rows of named values, handed out to
    users in ``order``, that fill the ``${name}`` placeholders of what they send.

    ``round_robin`` hands the rows out in turn, ``random`` draws one per user, ``unique``
    gives each live user a row no other live user holds (a row comes back when its user
    ends), so two users never log in as one account or watch one list.
    """

    rows: tuple[dict[str, object], ...]
    order: DataOrder = "round_robin"
    source: str = "rows"  # "rows" (inline) or the CSV file's path, for messages

    @property
    def names(self) -> frozenset[str]:
        """The value names every row has."""
        return frozenset(self.rows[0]) if self.rows else frozenset()


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
    baseline: BaselinePolicy = BaselinePolicy()
    data: DataSpec | None = None
    # How users get a token, if the backend needs one (see loadsvc.config._login)
    login: LoginSpec | None = None

    def endpoints(self) -> tuple[EndpointRef, ...]:
        """Every endpoint this scenario measures, in configuration order, without repeats
        (the login's, if any, last)."""
        seen: dict[tuple[str, str, str], EndpointRef] = {}
        refs = [ref for user in self.users for ref in user.endpoints()]
        if self.login is not None:
            refs.append(self.login.endpoint_ref())
        for ref in refs:
            key = (ref.kind, ref.endpoint, ref.method)
            first = seen.setdefault(key, ref)
            if ref.sequenced and not first.sequenced:  # sequenced if any group's frames are
                seen[key] = replace(first, sequenced=True)
        return tuple(seen.values())

    @cached_property
    def judged_endpoints(self) -> tuple[JudgedEndpoint, ...]:
        """Every endpoint (as :meth:`endpoints`) with its thresholds resolved, once."""
        return tuple(
            judged_endpoint(
                self.thresholds, ref.kind, ref.endpoint, ref.method, sequenced=ref.sequenced
            )
            for ref in self.endpoints()
        )

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
                out.update(p.latency_of(t).max_s for p in PROTOCOLS.values())
        return tuple(sorted(out))
