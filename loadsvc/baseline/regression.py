"""Judging a run against a baseline of comparable past runs: per endpoint and metric.

A metric regressed when both hold:

1. **Beyond the tolerance**, relative and absolute together: the run's value
   is past ``median(baseline) * (1 + relative)`` *and* past
   ``median(baseline) + absolute`` (for a rate per connection, a drop: below
   both). The larger of the two is the metric's *limit*.
2. **Not noise**: the run's own samples say so beyond chance (p < ``alpha``).
   For a latency quantile q, the share of samples surely above the limit
   (from the summary's compact histogram) is tested against 1 - q with an
   exact one-sided binomial test: "the q quantile is above the limit" is the
   same statement. Error and missed ratios get the same binomial test against
   the limit ratio; messages per connection-second a Poisson test.

Without enough comparable runs, or without the samples to test, nothing
regresses: a run says ``no baseline yet`` and never alarms. A metric that
could not be compared (missing on one side, no samples to test) is listed in
the headline as not compared: the report is then *incomplete*, never a plain
"no regression".

**Drift.** Each metric is also judged against the *anchored* baseline (the
median of the oldest comparable runs within ``select.ANCHOR_SPAN_S``, or since
the last acceptance), which moves over days or on accept, never window by
window. The recent median trails a slow drift and never sees it beyond the
tolerance; against the anchor a drift regresses at least when it totals what a
step of the same size would (the same rule), and sooner by a CUSUM: the
excesses of the recent runs (``trend``) past the anchor plus half the margin,
summed while positive, reaching the whole margin (``limit - anchor``), with the
run's own samples confirming it is past that half-way line (p < ``alpha``). So a
sustained shift of more than half the tolerance alarms after a few runs; noise
around the anchor sums to nothing.

**Lag.** Latencies are compared with the generator's event-loop lag p99 taken
off (``loadsvc.lag.lag_adjusted``), and the sample test counts samples past
``limit + lag`` (expecting ``LAG_TAIL`` more of them by chance: the lag p99 bounds
the lag of all but 1 % of the samples): only what the lag cannot account for can
regress. A raw value beyond the limit that the lag explains is *uncertain*: said,
never "ok" silently.
Values are in the summary JSON's units (latencies in ms).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from loadsvc.baseline.findings import (
    Doc,
    Finding,
    Reference,
    RegressionReport,
    ReportState,
    number,
    span_of,
)
from loadsvc.baseline.stats import binomial_sf, count_above, poisson_cdf
from loadsvc.config.spec import BaselinePolicy, Tolerance
from loadsvc.lag import lag_adjusted

DEFAULT_POLICY = BaselinePolicy()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _field(key: str) -> Callable[[Doc], float | None]:
    return lambda ep: number(ep.get(key))


def _missed_ratio(ep: Doc) -> float | None:
    missed, count = _int(ep.get("missed")), _int(ep.get("count"))
    if missed is None or count is None or missed + count == 0:
        return None
    return missed / (missed + count)


def _connection_seconds(ep: Doc) -> float | None:
    seconds = number(ep.get("connection_seconds"))
    if seconds is not None:
        return seconds
    count, rate = _int(ep.get("count")), number(ep.get("messages_per_second_per_connection"))
    return count / rate if count is not None and rate else None


# The lag p99 bounds what the generator added to all but this share of the samples: when
# the lag is taken off, that many more samples past the limit are expected by chance.
LAG_TAIL = 0.01

SampleTest = Callable[[Doc, float, float], float | None]  # (endpoint, limit, lag tail share)


def _quantile_test(histogram_key: str, q: float) -> SampleTest:
    def test(ep: Doc, limit_ms: float, lag_tail: float) -> float | None:
        counted = count_above(ep.get(histogram_key), limit_ms / 1000.0)
        if counted is None or counted[1] == 0:
            return None
        return binomial_sf(counted[0], counted[1], min(1.0, 1.0 - q + lag_tail))

    return test


def _error_test(ep: Doc, limit: float, _: float) -> float | None:
    errors, events = _int(ep.get("errors")), _int(ep.get("events"))
    if errors is None or not events:
        return None
    return binomial_sf(errors, events, limit)


def _missed_test(ep: Doc, limit: float, _: float) -> float | None:
    missed, count = _int(ep.get("missed")), _int(ep.get("count"))
    if missed is None or count is None or missed + count == 0:
        return None
    return binomial_sf(missed, missed + count, limit)


def _rate_test(ep: Doc, limit: float, _: float) -> float | None:
    count, seconds = _int(ep.get("count")), _connection_seconds(ep)
    if count is None or not seconds:
        return None
    return poisson_cdf(count, limit * seconds)


@dataclass(frozen=True)
class MetricRule:
    """One compared metric: how to read it, which way is worse, its tolerance and test."""

    name: str
    unit: Literal["ms", "ratio", "msg/s"]
    worse: Literal["up", "down"]
    value: Callable[[Doc], float | None]
    tolerance: Callable[[BaselinePolicy], Tolerance]
    test: SampleTest
    kinds: tuple[str, ...] = ("http", "ws")
    timing: bool = False  # measured by the generator's clock: compared with its lag taken off


METRICS: tuple[MetricRule, ...] = (
    *(
        MetricRule(
            f"p{round(q * 100)}",
            "ms",
            "up",
            _field(f"p{round(q * 100)}_ms"),
            lambda p: p.latency,
            _quantile_test("latency_histogram", q),
            timing=True,
        )
        for q in (0.5, 0.95, 0.99)
    ),
    MetricRule(
        "error_ratio", "ratio", "up", _field("error_rate"),
        lambda p: p.error_ratio, _error_test,
    ),
    MetricRule(
        "messages_per_connection_second", "msg/s", "down",
        _field("messages_per_second_per_connection"),
        lambda p: p.message_rate, _rate_test, ("ws",),
    ),
    MetricRule(
        "reconnect_p95", "ms", "up", _field("reconnect_p95_ms"),
        lambda p: p.reconnect, _quantile_test("reconnect_histogram", 0.95), ("ws",), True,
    ),
    MetricRule(
        "missed_ratio", "ratio", "up", _missed_ratio, lambda p: p.missed, _missed_test, ("ws",),
    ),
)  # fmt: skip
LATENCY_METRICS = ("p50", "p95", "p99")


def lag_ms_of(doc: Doc) -> float | None:
    """The run's event-loop lag p99 in ms (what the generator may have added), if measured."""
    return number(doc.get("loop_lag_p99_ms"))


def _lag_for(rule: MetricRule, ep: Doc, run_lag: float | None) -> float | None:
    """What the generator may have added to ``rule``'s value at ``ep`` (ms): for latencies the
    endpoint's own figure under its lag rule (``generator_ms_by_quantile``, or
    ``generator_ms`` in older records: 0 on a kernel-timed endpoint whose frames kept their
    reads), else the run's loop lag p99 (older records too)."""
    if not rule.timing:
        return None
    if rule.name in LATENCY_METRICS:
        by_quantile = ep.get("generator_ms_by_quantile")
        if isinstance(by_quantile, dict) and rule.name in by_quantile:
            return number(by_quantile[rule.name])  # what shared reads can do to this one
        if "generator_ms" in ep:
            return number(ep.get("generator_ms"))
    return run_lag


def _limit(rule: MetricRule, base: float, tol: Tolerance) -> float:
    if rule.worse == "up":
        return max(base * (1 + tol.relative), base + tol.absolute)
    return min(base * (1 - tol.relative), base - tol.absolute)


def _margin(rule: MetricRule, tol: Tolerance) -> str:
    sign = "+" if rule.worse == "up" else "-"
    absolute = {"ms": f"{tol.absolute:g} ms", "ratio": f"{tol.absolute * 100:g} pp"}.get(
        rule.unit, f"{tol.absolute:g} msg/s"
    )
    return f"{sign}{tol.relative * 100:g} % and {sign}{absolute}"


def _endpoints(doc: Doc) -> dict[tuple[str, str], Doc]:
    eps = doc.get("endpoints")
    out: dict[tuple[str, str], Doc] = {}
    if not isinstance(eps, list):
        return out
    for ep in eps:
        if isinstance(ep, dict) and isinstance(ep.get("endpoint"), str):
            out[(ep["endpoint"], str(ep.get("kind")))] = ep
    return out


def judge_against(
    current: Doc,
    baseline: Sequence[Doc],
    policy: BaselinePolicy = DEFAULT_POLICY,
    anchor: Sequence[Doc] = (),
    trend: Sequence[Doc] = (),
) -> RegressionReport:
    """Judge ``current`` (a summary document) against ``baseline`` (comparable past summaries,
    most recent first) and ``anchor`` (the oldest comparable ones); ``trend`` (the recent
    comparable runs, most recent first; default ``baseline``) feeds the drift sum."""
    if not policy.enabled:
        return RegressionReport("off", len(baseline), policy.min_runs)
    if len(baseline) < policy.min_runs:
        return RegressionReport("no_baseline", len(baseline), policy.min_runs)
    references: list[tuple[Reference, Sequence[Doc]]] = [("recent", baseline)]
    if len(anchor) >= policy.min_runs:
        references.append(("anchored", anchor))
    spans = {name: span_of(docs) for name, docs in references}
    pasts = {name: [_endpoints(d) for d in docs] for name, docs in references}
    recent = [_endpoints(d) for d in reversed(trend or baseline)]  # oldest first
    lag = lag_ms_of(current)
    now = _endpoints(current)
    findings: list[Finding] = []
    gaps: list[str] = []
    for key, ep in now.items():
        for rule in METRICS:
            if key[1] not in rule.kinds:
                continue
            runs = [v for p in recent if key in p and (v := rule.value(p[key])) is not None]
            judged = [
                _judge_metric(rule, key[0], ep, [p[key] for p in pasts[name] if key in p],
                              policy, spans[name], name, _lag_for(rule, ep, lag),
                              runs if name == "anchored" else ())
                for name, _ in references
            ]  # fmt: skip
            found = [f for f in judged if f is not None]
            if found:
                findings.append(next((f for f in found if f.regressed), found[0]))
            elif why := _why_not(rule, ep, [p[key] for p in pasts["recent"] if key in p]):
                gaps.append(f"{key[0]} {rule.name}: {why}")
    gone = {k for p in pasts["recent"] for k in p} - now.keys()
    gaps.extend(f"{endpoint}: in the baseline, not in this run" for endpoint, _ in sorted(gone))
    state: ReportState = "regressed" if any(f.regressed for f in findings) else "ok"
    return RegressionReport(
        state, len(baseline), policy.min_runs, spans["recent"], tuple(findings), tuple(gaps)
    )


def _why_not(rule: MetricRule, ep: Doc, past: list[Doc]) -> str:
    """Why a metric measured on one side only was not compared ("" when on neither side)."""
    now = rule.value(ep) is not None
    before = sum(rule.value(p) is not None for p in past)
    if now and not past:
        return "endpoint not in the baseline"
    if now:
        return f"in {before} baseline run(s) only"
    return "not measured in this run" if before else ""


def _judge_metric(
    rule: MetricRule,
    endpoint: str,
    ep: Doc,
    past: list[Doc],
    policy: BaselinePolicy,
    span: str,
    reference: Reference,
    lag: float | None,
    trend: Sequence[float] = (),
) -> Finding | None:
    value = rule.value(ep)
    values = [v for p in past if (v := rule.value(p)) is not None]
    if value is None or len(values) < policy.min_runs:
        return None  # nothing measured now, or too few past values: no judgement, no alarm
    base = statistics.median(values)
    tol = rule.tolerance(policy)
    limit = _limit(rule, base, tol)
    lag = lag or None
    if rule.worse == "up":
        raw_beyond = value > limit
        # Only what the generator's lag cannot account for may regress (loadsvc.lag).
        lag_ms = None if lag is None else lag / 1000.0
        beyond = lag_adjusted(value / 1000.0, lag_ms) * 1000.0 > limit if lag else raw_beyond
    else:
        raw_beyond = beyond = value < limit
    tail = LAG_TAIL if lag else 0.0
    p_value = rule.test(ep, limit + (lag or 0.0), tail) if beyond and limit > 0 else None
    regressed = beyond and p_value is not None and p_value < policy.alpha
    drift_runs = 0
    if not regressed and trend:
        now = value - (lag or 0.0) if rule.worse == "up" else value
        drift_runs = _drift(rule, base, limit, [*trend, now])
        if drift_runs:
            halfway = (base + limit) / 2 + (lag or 0.0)
            p_drift = rule.test(ep, halfway, tail) if halfway > 0 else None
            if p_drift is not None and p_drift < policy.alpha:
                regressed, p_value = True, p_drift
            else:
                drift_runs = 0
    return Finding(
        endpoint, rule.name, rule.unit, value, base, limit, len(values), span,
        _margin(rule, tol), beyond, p_value, regressed, reference, lag,
        raw_beyond and not beyond and not regressed, drift_runs,
    )  # fmt: skip


def _drift(rule: MetricRule, base: float, limit: float, runs: Sequence[float]) -> int:
    """A one-sided CUSUM over ``runs`` (oldest first, the current one last): the excesses
    past ``base`` plus half the margin, summed while the sum stays positive. When the sum at
    the last run reaches the whole margin, how many runs it took; else 0."""
    margin = abs(limit - base)
    if margin <= 0:
        return 0
    sign = 1.0 if rule.worse == "up" else -1.0
    total, length = 0.0, 0
    for value in runs:
        total += sign * (value - base) - margin / 2
        length = length + 1 if total > 0 else 0
        total = max(0.0, total)
    return length if total >= margin else 0
