"""Regression alerts: a run worse than its own past, though maybe within every threshold.

Two forms:

- ``LoadsvcLatencyRegression`` and ``LoadsvcRegression`` read the verdict loadsvc
  computed when the run ended (``loadsvc_regression_detected``: beyond the
  tolerance *and* the test on the run's own samples against the median of
  comparable past runs; ``POST .../accept-baseline`` clears it). They hold
  for ``for`` and ``keep_firing_for`` (:func:`hold_s`: longer than the longest
  verdict window), so one noisy window neither fires nor resolves them. Any
  scenario, any schedule.
- ``LoadsvcRegressionNotCompared``: a scenario that was compared with its
  baseline is not any more (``loadsvc_baseline_compared`` 0: the baseline was
  lost, or nothing could be compared) for longer than :func:`uncompared_for_s`.
- ``LoadsvcLatencyRegressionDayOverDay`` (continuous scenarios only) is pure
  PromQL: the endpoint's threshold quantile over the sustained window now
  against the same window one day earlier (``offset 1d``), beyond the same
  relative and absolute margins (the scenario's ``baseline.tolerance.latency``),
  held for ``for``. It needs a day of data; none for a scenario whose
  ``baseline.enabled`` is false.
"""

from __future__ import annotations

from loadsvc.baseline import LATENCY_METRICS
from loadsvc.config.spec import ScenarioSpec
from loadsvc.protocols import JudgedEndpoint
from loadsvc.render.profile import TimingProfile, prom_duration
from loadsvc.render.promql import (
    SCENARIO_ENDPOINT_LE,
    bucket_rate_record,
    latency_histogram,
    matchers,
    number,
)
from loadsvc.render.thresholds import Rule, alert

LATENCY = "|".join(LATENCY_METRICS)
OFFSET = "1d"


def _baseline(unit: str) -> str:
    """A template fragment: the baseline of the alert's series, humanized."""
    selector = "max(loadsvc_baseline_value{scenario=%q, endpoint=%q, metric=%q})"
    shown = "humanizeDuration" if unit == "duration" else 'printf "%.4g"'
    return (
        f"{{{{ with printf `{selector}` $labels.scenario $labels.endpoint $labels.metric "
        f"| query }}}}{{{{ . | first | value | {shown} }}}}{{{{ else }}}}unknown{{{{ end }}}}"
    )


def hold_s(scenarios: tuple[ScenarioSpec, ...], profile: TimingProfile) -> float:
    """How long a regression verdict must hold before it fires (and after it clears before
    it resolves): the profile's ``for``, or 1.5 verdict windows of the slowest continuous
    scenario if longer, so that one window alone never decides."""
    windows = [
        s.schedule.verdict_every_s
        for s in scenarios
        if s.schedule.kind == "continuous" and s.baseline.enabled and s.schedule.verdict_every_s
    ]
    return max([profile.for_s, *(1.5 * w for w in windows)])


def uncompared_for_s(scenarios: tuple[ScenarioSpec, ...], profile: TimingProfile) -> float:
    """How long a scenario may go uncompared with its baseline before it is an alert."""
    return 2 * hold_s(scenarios, profile)


def not_compared_rule(for_s: float) -> Rule:
    """A scenario compared before is not compared with a baseline any more."""
    return alert(
        "LoadsvcRegressionNotCompared",
        "min by (scenario) (loadsvc_baseline_compared) == 0",
        for_s,
        "warning",
        "runs of {{ $labels.scenario }} are no longer compared with a baseline",
        "Scenario {{ $labels.scenario }} was compared with its baseline before, and its "
        f"runs have not been for {prom_duration(for_s)}: the baseline was lost (its comparable "
        "runs are gone from the history) or no metric could be compared. A regression now "
        "would go unseen. The run-end log line and /api/runs say BASELINE LOST or NOT "
        "COMPARED and why.",
    )


def verdict_rules(hold: float = 0) -> list[Rule]:
    """Alerts on the regression verdicts loadsvc exports when a run or window ends."""
    explain = (
        "The run's value is beyond its tolerance and its own samples confirm it "
        "(not noise). /api/runs and the run-end log line say it in one line with the "
        "baseline runs' dates; the alert resolves once runs stop regressing, or soon after "
        "the new level is accepted (POST /api/scenarios/<name>/accept-baseline)."
    )
    rules = [
        alert(
            "LoadsvcLatencyRegression",
            "max by (scenario, endpoint, metric) "
            f'(loadsvc_regression_detected{{metric=~"{LATENCY}"}}) == 1',
            0,
            "warning",
            "{{ $labels.metric }} latency of {{ $labels.endpoint }} ({{ $labels.scenario }}) "
            "regressed against its baseline",
            "The last run of scenario {{ $labels.scenario }} is slower on "
            "{{ $labels.endpoint }} than its baseline: {{ $labels.metric }} beyond both "
            "margins of the scenario's baseline.tolerance.latency over the baseline "
            f"{_baseline('duration')} (the median of comparable past runs). {explain}",
        ),
        alert(
            "LoadsvcRegression",
            "max by (scenario, endpoint, metric) "
            f'(loadsvc_regression_detected{{metric!~"{LATENCY}"}}) == 1',
            0,
            "warning",
            "{{ $labels.metric }} of {{ $labels.endpoint }} ({{ $labels.scenario }}) "
            "regressed against its baseline",
            "The last run of scenario {{ $labels.scenario }} is worse on "
            "{{ $labels.endpoint }} than its baseline in {{ $labels.metric }} (baseline "
            f"{_baseline('number')}, the median of comparable past runs). {explain}",
        ),
    ]
    if hold <= 0:
        return rules
    held = {"for": prom_duration(hold), "keep_firing_for": prom_duration(hold)}
    return [{"alert": r["alert"], "expr": r["expr"], **held, **r} for r in rules]


def _quantile(selector: str, q: float, offset: str = "") -> str:
    shift = f" offset {offset}" if offset else ""
    return f"histogram_quantile({number(q)}, sum by ({SCENARIO_ENDPOINT_LE}) ({selector}{shift}))"


def day_over_day(scenario: ScenarioSpec, je: JudgedEndpoint, profile: TimingProfile) -> Rule:
    """The threshold quantile over the sustained window, now against one day earlier."""
    latency = je.latency
    histogram = latency_histogram(je.protocol)
    labels = {"scenario": scenario.name, "endpoint": je.endpoint}
    sel = bucket_rate_record(histogram, profile.sustained_window_s) + matchers(labels)
    now, then = _quantile(sel, latency.quantile), _quantile(sel, latency.quantile, OFFSET)
    tol = scenario.baseline.latency
    w = prom_duration(profile.sustained_window_s)
    q = latency.label
    return alert(
        "LoadsvcLatencyRegressionDayOverDay",
        f"{now}\n  > {number(1 + tol.relative)} * {then}\n"
        f"and\n{now}\n  > {number(tol.absolute / 1000)} + {then}",
        profile.for_s,
        "warning",
        f"{q} latency of {{{{ $labels.endpoint }}}} ({{{{ $labels.scenario }}}}) "
        "regressed day over day",
        f"{q} latency of {{{{ $labels.endpoint }}}} in continuous scenario "
        f"{{{{ $labels.scenario }}}} over the last {w} is {{{{ $value | humanizeDuration }}}}, "
        f"beyond +{tol.relative * 100:g} % and +{tol.absolute:g} ms of the same {w} one day "
        f"earlier, for {prom_duration(profile.for_s)}.",
        labels,
    )


def regression_rules(scenarios: tuple[ScenarioSpec, ...], profile: TimingProfile) -> list[Rule]:
    """The regression group: verdict alerts, and the day-over-day form of continuous scenarios."""
    rules = [
        *verdict_rules(hold_s(scenarios, profile)),
        not_compared_rule(uncompared_for_s(scenarios, profile)),
    ]
    for scenario in scenarios:
        if scenario.schedule.kind != "continuous" or not scenario.baseline.enabled:
            continue
        for je in scenario.judged_endpoints:
            rule = day_over_day(scenario, je, profile)
            if rule not in rules:
                rules.append(rule)
    return rules
