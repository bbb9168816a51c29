"""Judging a run: each endpoint's measured values against its thresholds.

Pure functions. A latency threshold ``q`` quantile <= ``max`` is judged by
counting the samples at or below ``max`` (kept as they arrive): "at least
``q`` of the samples are <= max" is the same statement as "the nearest-rank
``q`` quantile is <= max", and agrees with the alert rules, whose limits are
histogram bucket boundaries. The quantile itself is computed for the report.

Every judgement has a state: ``passed``, ``breached``, or ``no_data`` (fewer
latency samples than the threshold's ``min_samples``). No data fails the run:
a backend that answered nothing is never reported healthy. A WS endpoint
whose frames carried publish stamps later than their arrival (outcome
``skewed``) fails a ``clock_skew`` judgement that names the offset.

What a soak exists to catch on a WS stream is judged too (each when its
threshold is on): the delivery rate (data frames per connection-second, at
least a floor), missed frames per expected frame, stalls (connections silent
past the stall limit, see :class:`loadsvc.config.spec.StallThreshold`), and
the connect and reconnect times at a quantile. Duplicates are never delivered
frames, so they count in none of these.

A window's whole result (``passed``, ``failed`` or ``generator_bound``, with what the
generator's timing and starts make of the verdict) is :func:`loadsvc.window.judge_window`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from loadsvc.config.spec import LatencyThreshold, ScenarioThresholds
from loadsvc.lag import Rule, Timing, arrival_clock, rule_of, trust_limit_of
from loadsvc.latency import LatencySamples, exact_quantiles
from loadsvc.protocols import PROTOCOLS, JudgedEndpoint, ProtocolName, judged_endpoint
from loadsvc.protocols import ThresholdName as ThresholdName
from loadsvc.runstats import EndpointSummary

JudgementState = Literal["passed", "breached", "no_data"]
# Times the generator's own lag can add to (loadsvc.lag decides how much it may excuse).
LATENCY_THRESHOLDS = ("http_latency", "ws_delivery_latency", "ws_connect_time", "ws_reconnect_time")

# A clock offset or latency this far off is a unit mix-up, not a drifting clock:
# a stamp in ms read as seconds lies ~1e12 s in the future (offset < -1e6 s); one
# in seconds read as ms (or µs as ms...) lies decades back (latency > a day).
UNIT_OFFSET_S = -1e6
UNIT_LATENCY_S = 86_400.0


@dataclass(frozen=True)
class Judgement:
    """One threshold of one endpoint, with what was measured and its state."""

    endpoint: str
    kind: ProtocolName
    name: ThresholdName
    # seconds for latencies and connect times, a ratio for error_ratio and ws_missed_ratio,
    # frames per connection-second for ws_delivery_rate (a floor), stalls for ws_stalled,
    # 0 skewed frames for clock_skew
    limit: float
    value: float | None  # None: no data to judge; clock_skew: the clock offset (s)
    state: JudgementState
    quantile: float | None = None
    samples: int | None = None  # latency: how many samples the window had
    min_samples: int | None = None
    skewed: int = 0  # clock_skew: frames stamped after their arrival
    hint: str = ""  # clock_skew: what to check

    @property
    def passed(self) -> bool:
        """The threshold held (no_data does not)."""
        return self.state == "passed"

    def describe(self) -> str:
        """e.g. ``/api/x http_latency p95 = 251.0 ms (limit 200 ms) BREACHED``."""
        if self.name == "clock_skew":
            return self._describe_skew()
        if self.name in _STREAM_UNITS:
            return self._describe_stream()
        q = f" p{self.quantile * 100:g}" if self.quantile is not None else ""
        if self.state == "no_data" and self.name != "error_ratio":
            return (
                f"{self.endpoint} {self.name}{q}: no data "
                f"({self.samples or 0} of min {self.min_samples} samples) FAILED"
            )
        if self.name == "error_ratio":
            shown = "no data" if self.value is None else f"{self.value * 100:.2f}%"
            limit = f"{self.limit * 100:g}%"
        elif self.value is None and self.state == "passed":
            # min_samples 0 and none happened (a stream that never had to reconnect)
            return f"{self.endpoint} {self.name}{q}: none in this run (0 required) ok"
        else:
            shown = "no data" if self.value is None else f"{self.value * 1000:.1f} ms"
            limit = f"{self.limit * 1000:g} ms"
        state = "BREACHED" if self.state == "breached" else "ok"
        return f"{self.endpoint} {self.name}{q} = {shown} (limit {limit}) {state}"

    def _describe_stream(self) -> str:
        """A stream judgement in its unit, e.g. ``/ws/market ws_delivery_rate = 0.10 msg/s
        per connection (floor 1 msg/s) BREACHED``."""
        unit, bound, why_none = _STREAM_UNITS[self.name]
        if self.state == "no_data" or self.value is None:
            return f"{self.endpoint} {self.name}: no data ({why_none}) FAILED"
        value, limit = _stream_number(self.name, self.value), _stream_number(self.name, self.limit)
        state = "BREACHED" if self.state == "breached" else "ok"
        return f"{self.endpoint} {self.name} = {value}{unit} ({bound} {limit}) {state}"

    def _describe_skew(self) -> str:
        offset = "unknown" if self.value is None else f"{self.value:.3f} s"
        return (
            f"{self.endpoint} clock_skew: {self.skewed} frames stamped after their arrival, "
            f"clock offset min {offset} (negative: the server's clock is ahead); "
            f"{self.hint} FAILED"
        )


@dataclass(frozen=True)
class Verdict:
    """Every judgement of a run; it passes when all of them pass."""

    judgements: tuple[Judgement, ...]

    @property
    def passed(self) -> bool:
        """True when every threshold held (a breach or no data fails)."""
        return all(j.passed for j in self.judgements)

    def breached(self) -> tuple[Judgement, ...]:
        """The judgements that failed (breached or no data)."""
        return tuple(j for j in self.judgements if not j.passed)

    @property
    def only_latency_breached(self) -> bool:
        """Failed, and only by latency thresholds over real data: what a slow generator can cause."""
        failed = self.breached()
        return bool(failed) and all(
            j.name in LATENCY_THRESHOLDS and j.state == "breached" for j in failed
        )

    def explained_by(self, timing: Timing, clocks: Mapping[str, str | None]) -> bool:
        """Failed only by latency breaches the generator may have caused, each under its own
        rule (``clocks``: each endpoint's arrival clock; see :func:`loadsvc.lag.rule_of`)."""
        return self.only_latency_breached and all(
            j.value is not None
            and timing.explains(j.value, j.limit, rule_for(j, clocks), j.endpoint, j.quantile)
            for j in self.breached()
        )

    def busy_rules(self, timing: Timing, clocks: Mapping[str, str | None]) -> set[Rule]:
        """The rules under which the generator was busy for one of this verdict's breaches."""
        return {r for j in self.breached() if timing.busy(r := rule_for(j, clocks))}


def rule_for(j: Judgement, clocks: Mapping[str, str | None]) -> Rule:
    """The lag rule that judges ``j`` (:func:`loadsvc.lag.rule_of` of its endpoint's clock)."""
    return rule_of(clocks.get(j.endpoint), j.name)


def clocks_of(summaries: Iterable[EndpointSummary]) -> dict[str, str | None]:
    """Each endpoint's arrival clock (``kernel``, ``loop``, ``mixed``; None before any)."""
    return {s.endpoint: arrival_clock(s.arrival_clocks) for s in summaries}


def judge(
    thresholds: ScenarioThresholds,
    measured: Iterable[tuple[EndpointSummary, LatencySamples]],
    *,
    idle: frozenset[str] = frozenset(),
) -> Verdict:
    """Judge every endpoint of a run against the thresholds that apply to it.

    Endpoints in ``idle`` had no user on this shard during the window: not judged.
    """
    out: list[Judgement] = []
    for summary, samples in measured:
        if summary.endpoint in idle:
            continue
        je = judged_endpoint(
            thresholds, summary.kind, summary.endpoint, summary.method, sequenced=summary.sequenced
        )
        out.append(_latency(je, summary, samples))
        limit = je.limits["error_ratio"]
        ratio = summary.error_ratio if summary.events else None
        state: JudgementState = (
            "no_data" if ratio is None else "passed" if ratio <= limit else "breached"
        )
        # No events at all already fails the latency judgement; not a second failure.
        out.append(
            Judgement(
                endpoint=summary.endpoint,
                kind=summary.kind,
                name="error_ratio",
                limit=limit,
                value=ratio,
                state="passed" if state == "no_data" else state,
            )
        )
        skew = clock_skew(summary)
        if skew is not None:
            out.append(skew)
        out.extend(stream_judgements(je, summary))
    return Verdict(tuple(out))


# A stream judgement's unit, how its limit reads ("floor" for a minimum), and why it has no data.
_STREAM_UNITS: dict[str, tuple[str, str, str]] = {
    "ws_delivery_rate": (" per connection", "floor", "no connection was open"),
    "ws_missed_ratio": (
        " of the expected frames",
        "limit",
        "no frame was expected or carried its sequence number",
    ),
    "ws_stalled": (" stalls", "limit", "not watched"),
}


def _stream_number(name: str, value: float) -> str:
    if name == "ws_missed_ratio":
        return f"{value * 100:.2f}%"
    if name == "ws_stalled":
        return f"{value:g}"
    return f"{value:.2f} msg/s"


def stream_judgements(je: JudgedEndpoint, s: EndpointSummary) -> list[Judgement]:
    """What a soak exists to catch on a stream: each of its thresholds that is on
    (``je.limits``: none on a protocol without connections)."""
    out: list[Judgement] = []
    limits = je.limits

    def add(name: ThresholdName, value: float | None, ok: bool) -> None:
        state: JudgementState = "no_data" if value is None else "passed" if ok else "breached"
        out.append(Judgement(s.endpoint, s.kind, name, limits[name], value, state))

    if "ws_delivery_rate" in limits:
        rate = s.messages_per_second_per_connection
        add("ws_delivery_rate", rate, rate is not None and rate >= limits["ws_delivery_rate"])
    if "ws_missed_ratio" in limits:  # only where frames carry a sequence number
        missed = s.missed_ratio
        add("ws_missed_ratio", missed, missed is not None and missed <= limits["ws_missed_ratio"])
    if "ws_stalled" in limits:
        add("ws_stalled", float(s.stalls), s.stalls <= limits["ws_stalled"])
    quantiles = je.quantiles
    if "ws_connect_time" in quantiles:
        connect = quantiles["ws_connect_time"]
        out.append(_time("ws_connect_time", connect, s, s.connect_time_s, s.connects))
    if "ws_reconnect_time" in quantiles:
        reconnect = quantiles["ws_reconnect_time"]
        out.append(_time("ws_reconnect_time", reconnect, s, s.reconnect_time_s, s.reconnects))
    return out


def _time(
    name: ThresholdName, limit: LatencyThreshold, s: EndpointSummary, value: float | None, n: int
) -> Judgement:
    """A connect or reconnect time quantile against its limit (0 samples pass at min_samples 0)."""
    within = value is None or value <= limit.max_s  # None: none happened, and none were required
    return quantile_judgement(s.endpoint, s.kind, name, limit, value, n, within)


def quantile_judgement(
    endpoint: str,
    kind: ProtocolName,
    name: ThresholdName,
    limit: LatencyThreshold,
    value: float | None,
    n: int,
    within: bool,
) -> Judgement:
    """A quantile threshold over ``n`` samples: ``no_data`` under its ``min_samples``, passed
    with none at all (``min_samples: 0``), else as ``within`` (the quantile is <= the limit)
    says. The one place the verdict, the live judgement and the time thresholds make it."""
    state: JudgementState
    if n < limit.min_samples:
        state = "no_data"
    elif n == 0 or within:
        state = "passed"
    else:
        state = "breached"
    return Judgement(
        endpoint=endpoint,
        kind=kind,
        name=name,
        limit=limit.max_s,
        value=value,
        state=state,
        quantile=limit.quantile,
        samples=n,
        min_samples=limit.min_samples,
    )


def _latency(je: JudgedEndpoint, summary: EndpointSummary, samples: LatencySamples) -> Judgement:
    name, latency = je.latency_name, je.latency
    n = samples.count
    value = exact_quantiles(samples.samples, (latency.quantile,))[latency.quantile]
    # Nearest rank: the q quantile is <= max iff at least ceil(q n) samples are.
    need = max(1, math.ceil(latency.quantile * n - 1e-9))
    within = samples.count_at_or_below(latency.max_s) >= need
    return quantile_judgement(summary.endpoint, summary.kind, name, latency, value, n, within)


def clock_skew(summary: EndpointSummary) -> Judgement | None:
    """A failed ``clock_skew`` judgement when frames were stamped after their arrival,
    or when delivery latencies are so large (over a day) that the stamps' unit must be wrong."""
    skewed = summary.outcome("skewed")
    offset = summary.clock_offset_min_s
    too_late = summary.p50_s is not None and summary.p50_s > UNIT_LATENCY_S
    if skewed == 0 and not too_late:
        return None
    implausible = too_late or (offset is not None and offset < UNIT_OFFSET_S)
    hint = (
        "the stamps are off by a unit (~1000x): check the endpoint's timestamp_unit"
        if implausible
        else "check clock sync (NTP) between the server and this host, or timestamp_unit"
    )
    return Judgement(
        endpoint=summary.endpoint,
        kind=summary.kind,
        name="clock_skew",
        limit=0.0,
        value=offset,
        state="breached",
        skewed=skewed,
        hint=hint,
    )


def trust_limit(thresholds: ScenarioThresholds) -> float:
    """The loop lag p99 above which a latency breach may be the generator's doing."""
    return trust_limit_of(
        p.latency_of(t).max_s for t in thresholds.all() for p in PROTOCOLS.values()
    )


def tightest_trust_limit(thresholds: Iterable[ScenarioThresholds]) -> float | None:
    """The trust limit of a whole configuration: the tightest of its scenarios' (None: none).

    The live ``loadsvc_generator_busy`` gauge watches one loop for every scenario, so it
    uses the strictest of their limits.
    """
    limits = [trust_limit(t) for t in thresholds]
    return min(limits) if limits else None


# The quantiles a summary and a baseline read (p50, p95, p99), besides the thresholds' own.
REPORTED_QUANTILES = (0.5, 0.95, 0.99)
