"""Judging a run: each endpoint's measured values against its thresholds.

Pure functions. A latency threshold ``q`` quantile <= ``max`` is judged on the
exact samples by nearest rank, which is the same statement as "at least ``q``
of the samples are <= max" and so agrees with the alert rules, whose limits
are histogram bucket boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from loadsvc.config.spec import ScenarioThresholds
from loadsvc.runstats import EndpointSummary, LatencySamples, nearest_rank

ThresholdName = Literal["http_latency", "ws_delivery_latency", "error_ratio"]


@dataclass(frozen=True)
class Judgement:
    """One threshold of one endpoint, with what was measured."""

    endpoint: str
    kind: Literal["http", "ws"]
    name: ThresholdName
    limit: float  # seconds for latencies, a ratio for error_ratio
    value: float | None  # None: no data to judge
    passed: bool
    quantile: float | None = None

    def describe(self) -> str:
        """e.g. ``/api/x http_latency p95 = 251.0 ms (limit 200 ms) BREACHED``."""
        if self.name == "error_ratio":
            shown = "no data" if self.value is None else f"{self.value * 100:.2f}%"
            limit = f"{self.limit * 100:g}%"
        else:
            shown = "no data" if self.value is None else f"{self.value * 1000:.1f} ms"
            limit = f"{self.limit * 1000:g} ms"
        q = f" p{self.quantile * 100:g}" if self.quantile is not None else ""
        state = "ok" if self.passed else "BREACHED"
        return f"{self.endpoint} {self.name}{q} = {shown} (limit {limit}) {state}"


@dataclass(frozen=True)
class Verdict:
    """Every judgement of a run; it passes when all of them pass."""

    judgements: tuple[Judgement, ...]

    @property
    def passed(self) -> bool:
        """True when no threshold was breached."""
        return all(j.passed for j in self.judgements)

    def breached(self) -> tuple[Judgement, ...]:
        """The judgements that failed."""
        return tuple(j for j in self.judgements if not j.passed)


def judge(
    thresholds: ScenarioThresholds,
    measured: Iterable[tuple[EndpointSummary, LatencySamples]],
) -> Verdict:
    """Judge every endpoint of a run against the thresholds that apply to it."""
    out: list[Judgement] = []
    for summary, samples in measured:
        t = thresholds.for_endpoint(summary.endpoint)
        name, latency = t.latency_for(summary.kind)
        value = nearest_rank(sorted(samples.samples), latency.quantile)
        out.append(
            Judgement(
                endpoint=summary.endpoint,
                kind=summary.kind,
                name=name,
                limit=latency.max_s,
                value=value,
                passed=value is None or value <= latency.max_s,
                quantile=latency.quantile,
            )
        )
        ratio = summary.error_ratio if summary.events else None
        out.append(
            Judgement(
                endpoint=summary.endpoint,
                kind=summary.kind,
                name="error_ratio",
                limit=t.error_ratio,
                value=ratio,
                passed=ratio is None or ratio <= t.error_ratio,
            )
        )
    return Verdict(tuple(out))
