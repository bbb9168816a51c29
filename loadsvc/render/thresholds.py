"""Threshold alerts: one set per scenario and endpoint, with the configured limits inlined.

The limits are written into the expressions (not read from a series), so a
changed threshold is a visible diff in the committed rule file and a rule never
depends on the running service to know its limit.
"""

from __future__ import annotations

from loadsvc.config.spec import LatencyThreshold, ScenarioSpec
from loadsvc.protocols import JudgedEndpoint
from loadsvc.render.profile import BurnWindow, TimingProfile, prom_duration
from loadsvc.render.promql import (
    error_ratio_record,
    fraction_within,
    latency_histogram,
    matchers,
    number,
    quantile_record,
)

Rule = dict[str, object]

RUNBOOK = "docs/runbook.md"


def runbook_url(alertname: str) -> str:
    """Where the runbook section of ``alertname`` is (GitHub anchors are lower case)."""
    return f"{RUNBOOK}#{alertname.lower()}"


def alert(
    name: str,
    expr: str,
    for_s: float,
    severity: str,
    summary: str,
    description: str,
    labels: dict[str, str] | None = None,
) -> Rule:
    """One alerting rule in the house shape: severity label, summary, description, runbook.

    ``labels`` (scenario, endpoint of a generated rule) are set explicitly as
    well as coming from the expression: rules of one name then differ in their
    labels, which promtool's duplicate-rule lint requires.
    """
    rule: Rule = {"alert": name, "expr": expr}
    if for_s > 0:
        rule["for"] = prom_duration(for_s)
    rule["labels"] = {"severity": severity, **(labels or {})}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": runbook_url(name),
    }
    return rule


def _percent(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _measured_quantile(histogram: str, window_s: float, threshold: LatencyThreshold) -> str:
    """A template fragment: the recorded quantile of the alerting endpoint, humanized."""
    record = quantile_record(histogram, window_s)
    selector = f'{record}{{scenario=%q, endpoint=%q, quantile="{number(threshold.quantile)}"}}'
    return (
        f"{{{{ with printf `{selector}` $labels.scenario $labels.endpoint | query }}}}"
        "{{ . | first | value | humanizeDuration }}{{ else }}unknown{{ end }}"
    )


def latency_alerts(
    scenario: ScenarioSpec, je: JudgedEndpoint, profile: TimingProfile
) -> list[Rule]:
    """Warning after ``for`` over the rate window; critical when the sustained window agrees."""
    protocol, threshold = je.protocol, je.latency
    name = protocol.latency_alert
    histogram = latency_histogram(je.protocol)
    what, items, done = protocol.alert_what, protocol.items, protocol.done
    labels = {"scenario": scenario.name, "endpoint": je.endpoint}
    q = threshold.label
    limit = prom_duration(threshold.max_s)
    need = _percent(threshold.quantile)
    w = prom_duration(profile.rate_window_s)
    long_w = prom_duration(profile.sustained_window_s)

    def below(window_s: float) -> str:
        inner = fraction_within(histogram, window_s, labels, threshold).replace("\n", "\n  ")
        return f"(\n  {inner}\n) < {number(threshold.quantile)}"

    measured = _measured_quantile(histogram, profile.rate_window_s, threshold)
    summary = f"{what} {q} latency of {{{{ $labels.endpoint }}}} ({{{{ $labels.scenario }}}}) above {limit}"
    tail = (
        f"the threshold needs at least {need} ({q} <= {limit}). Measured {q} over {w}: {measured}."
    )
    return [
        alert(
            name,
            below(profile.rate_window_s),
            profile.for_s,
            "warning",
            summary,
            f"Over the last {w} only {{{{ $value | humanizePercentage }}}} of {items} on "
            f"{{{{ $labels.endpoint }}}} in scenario {{{{ $labels.scenario }}}} {done} "
            f"within {limit}; {tail}",
            labels,
        ),
        alert(
            name,
            f"{below(profile.rate_window_s)}\nand\n{below(profile.sustained_window_s)}",
            profile.for_s,
            "critical",
            f"{summary} for {long_w}",
            f"Sustained regression: over the last {long_w} and still over the last {w} "
            f"(now {{{{ $value | humanizePercentage }}}}) fewer {items} on "
            f"{{{{ $labels.endpoint }}}} in scenario {{{{ $labels.scenario }}}} {done} "
            f"within {limit} than the threshold allows; {tail}",
            labels,
        ),
    ]


def _burn_condition(labels: dict[str, str], limit: float, burn: BurnWindow) -> str:
    # Short window first: `and` keeps the left value, so $value is the current ratio.
    bound = number(burn.factor * limit)
    sel = matchers(labels)
    return (
        f"  {error_ratio_record(burn.short_s)}{sel} > {bound}\n"
        "  and\n"
        f"  {error_ratio_record(burn.long_s)}{sel} > {bound}"
    )


def error_alerts(scenario: ScenarioSpec, je: JudgedEndpoint, profile: TimingProfile) -> list[Rule]:
    """Warning on the ratio over the rate window; critical on a multi-window burn rate."""
    limit = je.limits["error_ratio"]
    labels = {"scenario": scenario.name, "endpoint": je.endpoint}
    w = prom_duration(profile.rate_window_s)
    pct = _percent(limit)
    rules = [
        alert(
            "LoadsvcErrorRatioHigh",
            f"{error_ratio_record(profile.rate_window_s)}{matchers(labels)} > {number(limit)}",
            profile.for_s,
            "warning",
            "Error ratio of {{ $labels.endpoint }} ({{ $labels.scenario }}) above " + pct,
            f"{{{{ $value | humanizePercentage }}}} of the {{{{ $labels.protocol }}}} "
            f"traffic of {{{{ $labels.endpoint }}}} in scenario {{{{ $labels.scenario }}}} "
            f"failed over the last {w}; the threshold is {pct}.",
            labels,
        )
    ]
    # A burn factor whose bound reaches 100 % can never fire: leave it out.
    burns = [b for b in profile.burn_windows if b.factor * limit < 1]
    if burns:
        expr = "\nor\n".join(f"(\n{_burn_condition(labels, limit, b)}\n)" for b in burns)
        spans = "; ".join(
            f"{b.factor:g}x the limit ({_percent(b.factor * limit)}) over both "
            f"{prom_duration(b.long_s)} and {prom_duration(b.short_s)}"
            for b in burns
        )
        rules.append(
            alert(
                "LoadsvcErrorBudgetBurn",
                expr,
                profile.burn_for_s,
                "critical",
                "{{ $labels.endpoint }} ({{ $labels.scenario }}) is burning its error budget fast",
                f"The {{{{ $labels.protocol }}}} error ratio of {{{{ $labels.endpoint }}}} in "
                f"scenario {{{{ $labels.scenario }}}} is {{{{ $value | humanizePercentage }}}}, "
                f"far above the {pct} threshold. Fires on any of: {spans}.",
                labels,
            )
        )
    return rules


def endpoint_alerts(
    scenario: ScenarioSpec, je: JudgedEndpoint, profile: TimingProfile
) -> list[Rule]:
    """Every threshold alert of one endpoint of one scenario."""
    return [*latency_alerts(scenario, je, profile), *error_alerts(scenario, je, profile)]


def threshold_rules(scenarios: tuple[ScenarioSpec, ...], profile: TimingProfile) -> list[Rule]:
    """Threshold alerts of every scenario and endpoint, in configuration order, without repeats."""
    rules: list[Rule] = []
    for scenario in scenarios:
        for je in scenario.judged_endpoints:
            for rule in endpoint_alerts(scenario, je, profile):
                # One endpoint with two REST methods shares its thresholds and its alerts.
                if rule not in rules:
                    rules.append(rule)
    return rules
