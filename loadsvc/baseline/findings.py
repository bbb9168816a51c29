"""What a regression judgement says: each metric's finding and the report's one-line headline.

Pure data and wording, read by the summary JSON, the terminal, ``/api/status``,
``/api/runs`` and the run-end log line; :mod:`.regression` makes them.
Values are in the summary JSON's units (latencies in ms).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

ReportState = Literal["off", "no_baseline", "ok", "regressed"]
Reference = Literal["recent", "anchored"]
Doc = Mapping[str, Any]


def number(value: Any) -> float | None:
    """A finite number from a parsed document, else None (corrupt values never compare)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _show(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    return f"{value:.2f} msg/s"


def _runs(n: int) -> str:
    return "1 run" if n == 1 else f"{n} runs"


@dataclass(frozen=True)
class Finding:
    """One metric of one endpoint against its baseline, and whether it regressed."""

    endpoint: str
    metric: str
    unit: str
    value: float
    baseline: float  # the median of the baseline runs' values
    limit: float  # past this (both margins) the value is beyond the tolerance
    runs: int  # baseline runs with a value for this metric
    span: str  # the baseline runs' dates, e.g. 2026-11-23..29
    margin: str  # e.g. "+50 % and +10 ms"
    beyond: bool  # past the limit (a latency: once the generator's lag is taken off)
    p_value: float | None  # the test on the run's own samples; None: nothing to test
    regressed: bool
    reference: Reference = "recent"  # the last comparable runs, or the anchored oldest ones
    lag: float | None = None  # the generator's lag p99 taken off a latency (ms)
    uncertain: bool = False  # beyond the limit raw, but by no more than the generator's lag
    drift_runs: int = 0  # runs (this one included) whose excess summed past the margin: a drift

    def describe(self) -> str:
        """e.g. ``/api/x p95 38.0 ms vs baseline 4.1 ms (median of 7 runs, 2026-11-23..29):
        +827 %, beyond +50 % and +10 ms``."""
        change = (
            f"{(self.value - self.baseline) / self.baseline * 100:+.0f} %"
            if self.baseline
            else f"{'+' if self.value >= 0 else ''}{_show(self.value, self.unit)} from 0"
        )
        which = "anchored baseline" if self.reference == "anchored" else "baseline"
        whose = "oldest " if self.reference == "anchored" else ""
        head = (
            f"{self.endpoint} {self.metric} {_show(self.value, self.unit)} vs {which} "
            f"{_show(self.baseline, self.unit)} (median of {whose}{_runs(self.runs)}, "
            f"{self.span}): {change}"
        )
        if self.regressed and self.drift_runs:
            return (
                f"{head}, a drift: past half of {self.margin} over the last {self.drift_runs} "
                "runs, beyond the whole margin in sum"
            )
        if self.regressed:
            drift = ": a drift" if self.reference == "anchored" else ""
            return f"{head}, beyond {self.margin}{drift}"
        if self.uncertain:
            return (
                f"{head}, beyond {self.margin} by no more than the generator's lag p99 "
                f"{self.lag:g} ms: uncertain, not judged a regression"
            )
        if self.beyond and self.p_value is None:
            return f"{head}, beyond {self.margin} but no samples to test: not judged"
        if self.beyond:
            return f"{head}, beyond {self.margin} but within noise (p = {self.p_value:.2g})"
        return f"{head}, within {self.margin}"

    @property
    def untested(self) -> bool:
        """Past the limit with no samples to test it: not compared, not "no regression"."""
        return self.beyond and self.p_value is None

    def doc(self) -> dict[str, Any]:
        """The finding in the summary JSON and /api/runs."""
        return {
            "endpoint": self.endpoint,
            "metric": self.metric,
            "unit": self.unit,
            "value": round(self.value, 6),
            "baseline": round(self.baseline, 6),
            "limit": round(self.limit, 6),
            "runs": self.runs,
            "reference": self.reference,
            "p_value": None if self.p_value is None else float(f"{self.p_value:.3g}"),
            "regressed": self.regressed,
            "uncertain": self.uncertain,
            "description": self.describe(),
        }


@dataclass(frozen=True)
class RegressionReport:
    """A run judged against its baseline: the findings, and one line that says it."""

    state: ReportState
    runs: int  # comparable runs in the baseline
    min_runs: int
    span: str = ""
    findings: tuple[Finding, ...] = field(default=())
    not_compared: tuple[str, ...] = ()  # "endpoint metric: why" of what could not be compared
    lost: bool = False  # comparable runs existed before and are gone (set by the caller)

    def regressions(self) -> tuple[Finding, ...]:
        """The findings that regressed."""
        return tuple(f for f in self.findings if f.regressed)

    def uncertain(self) -> tuple[Finding, ...]:
        """The findings beyond the limit by no more than the generator's lag."""
        return tuple(f for f in self.findings if f.uncertain)

    def gaps(self) -> tuple[str, ...]:
        """What was not compared: missing on one side, or no samples to test."""
        untested = tuple(
            f"{f.endpoint} {f.metric}: beyond {f.margin} but no samples to test"
            for f in self.findings
            if f.untested
        )
        return self.not_compared + untested

    @property
    def complete(self) -> bool:
        """Every metric compared, none only "uncertain", and at least one compared: "no
        regression" may be said plainly (a comparison of nothing is never complete)."""
        compared = any(not (f.untested or f.uncertain) for f in self.findings)
        return self.state != "ok" or (compared and not (self.gaps() or self.uncertain()))

    def headline(self) -> str:
        """One line: no baseline yet, no regression, or the first regressions, and what was
        not compared."""
        if self.state == "off":
            return "not compared with a baseline (baseline.enabled is false)"
        if self.state == "no_baseline":
            lost = "BASELINE LOST: " if self.lost else ""
            return f"{lost}no baseline yet ({self.runs} of {self.min_runs} comparable runs)"
        compared = sum(not (f.untested or f.uncertain) for f in self.findings)
        if self.state == "regressed":
            line = "REGRESSION: " + "; ".join(f.describe() for f in self.regressions())
        elif compared == 0:
            line = "NOTHING COMPARED: no metric could be judged against the baseline"
        elif self.complete:
            line = f"no regression against the baseline (median of {_runs(self.runs)}, {self.span})"
        else:
            line = (
                f"no regression in the {compared} metric(s) compared "
                f"(median of {_runs(self.runs)}, {self.span})"
            )
        if self.uncertain():
            line += "; UNCERTAIN: " + "; ".join(f.describe() for f in self.uncertain())
        if self.gaps():
            line += "; NOT COMPARED: " + "; ".join(self.gaps())
        return line

    def doc(self) -> dict[str, Any]:
        """The ``regression`` part of the summary JSON, /api/status and /api/runs."""
        return {
            "state": self.state,
            "runs": self.runs,
            "min_runs": self.min_runs,
            "span": self.span,
            "headline": self.headline(),
            "findings": [f.doc() for f in self.findings],
            "complete": self.complete,
            "not_compared": list(self.gaps()),
            "lost": self.lost,
        }


def span_of(docs: Sequence[Doc]) -> str:
    """The dates of the baseline runs: ``2026-11-23..29``, ``2026-11-23``, ``2026-11-30..12-02``."""
    stamps = [t for d in docs if (t := number(d.get("started_at"))) is not None]
    try:
        first = datetime.fromtimestamp(min(stamps), UTC).date()
        last = datetime.fromtimestamp(max(stamps), UTC).date()
    except (ValueError, OverflowError, OSError):  # none, or not a date: never stop comparing
        return "dates unknown"
    if first == last:
        return first.isoformat()
    if first.year != last.year:
        return f"{first.isoformat()}..{last.isoformat()}"
    tail = f"{last.day:02d}" if first.month == last.month else f"{last.month:02d}-{last.day:02d}"
    return f"{first.isoformat()}..{tail}"
