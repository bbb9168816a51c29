"""Alerts on what a soak exists to catch on a WS stream, from the same thresholds as the verdict.

One rule per stream judgement that is on (see :mod:`loadsvc.verdict`): the
delivery rate under its floor, missed frames over their share, stalls over
their count, connect and reconnect times over their quantile. Each sums over
replicas. The rate divides the data frames (not status, not duplicates) by the
connections open on average over the window: messages per connection-second,
as the verdict counts them. Connect and reconnect limits are bucket bounds of
their histograms (the configuration checks it), so those rules are exact.
"""

from __future__ import annotations

from loadsvc.config.spec import LatencyThreshold, ScenarioSpec
from loadsvc.metrics import NAMES
from loadsvc.protocols import JudgedEndpoint
from loadsvc.render.profile import TimingProfile, prom_duration
from loadsvc.render.promql import NOT_DATA, SCENARIO_ENDPOINT, le_label, matchers, number
from loadsvc.render.thresholds import Rule, alert


def _sum(expr: str) -> str:
    return f"sum by ({SCENARIO_ENDPOINT}) ({expr})"


def delivery_rate_expr(selector: str, data_selector: str, window: str) -> str:
    """Data messages per connection-second over ``window`` per scenario and endpoint: the data
    frames (``data_selector``) over the connections (``selector``) open on average, as the
    verdict counts them. The alert and the dashboards spell it the same."""
    delivered = _sum(f"rate({NAMES.ws_messages}{data_selector}[{window}])")
    connections = _sum(f"avg_over_time({NAMES.ws_connections}{selector}[{window}])")
    return f"{delivered}\n/\n{connections}"


def missed_ratio_expr(selector: str, data_selector: str, window: str) -> str:
    """Missed frames per expected frame (missed + delivered) over ``window``."""
    missed = _sum(f"rate({NAMES.ws_messages_missed}{selector}[{window}])")
    delivered = _sum(f"rate({NAMES.ws_messages}{data_selector}[{window}])")
    return f"{missed}\n/\n({missed} + {delivered})"


def stalls_expr(selector: str, window: str) -> str:
    """Connections that went silent past the stall limit over ``window``."""
    return _sum(f"increase({NAMES.ws_stalls}{selector}[{window}])")


def stream_alerts(scenario: ScenarioSpec, je: JudgedEndpoint, profile: TimingProfile) -> list[Rule]:
    """Every stream alert of one endpoint whose threshold is on there (``je.limits``: the
    missed share only where frames carry a sequence; none on a protocol without streams)."""
    t = je.thresholds
    labels = {"scenario": scenario.name, "endpoint": je.endpoint}
    sel = matchers(labels)
    data = matchers(labels, NOT_DATA)
    w = prom_duration(profile.rate_window_s)
    where = "{{ $labels.endpoint }} ({{ $labels.scenario }})"
    rules: list[Rule] = []
    if "ws_delivery_rate" in je.limits:
        floor = number(t.ws_delivery_rate)
        rules.append(
            alert(
                "LoadsvcWsDeliveryRateLow",
                f"{delivery_rate_expr(sel, data, w)}\n< {floor}\n"
                # Only over a whole window of data with connections open throughout: rate()
                # of a series younger than the window under-reads it (a start is no stall).
                f"and on (scenario, endpoint)\n"
                f"{_sum(f'min_over_time({NAMES.ws_connections}{sel}[{w}])')} > 0\n"
                f"and on (scenario, endpoint)\n"
                f"count by (scenario, endpoint) ({NAMES.ws_messages}{data} offset {w})",
                profile.for_s,
                "warning",
                f"WS delivery rate of {where} below {floor} msg/s per connection",
                f"Over the last {w} each connection to {{{{ $labels.endpoint }}}} in scenario "
                '{{ $labels.scenario }} received {{ $value | printf "%.2f" }} data messages '
                f"per second; the floor is {floor}.",
                labels,
            )
        )
    if "ws_missed_ratio" in je.limits:
        limit = number(t.ws_missed_ratio)
        rules.append(
            alert(
                "LoadsvcWsMissedRatioHigh",
                f"{missed_ratio_expr(sel, data, w)}\n> {limit}",
                profile.for_s,
                "warning",
                f"WS frames of {where} missed above {t.ws_missed_ratio * 100:g}%",
                "{{ $value | humanizePercentage }} of the frames expected on "
                "{{ $labels.endpoint }} in scenario {{ $labels.scenario }} (sequence gaps) "
                f"never arrived over the last {w}; the threshold is {t.ws_missed_ratio * 100:g}%.",
                labels,
            )
        )
    if "ws_stalled" in je.limits and t.ws_stall.after_s is not None:
        after = prom_duration(t.ws_stall.after_s)
        rules.append(
            alert(
                "LoadsvcWsStalled",
                f"{stalls_expr(sel, w)} > {t.ws_stall.max}",
                0,
                "critical",
                f"WS connections to {where} stalled",
                '{{ $value | printf "%.0f" }} connections to {{ $labels.endpoint }} in '
                f"scenario {{{{ $labels.scenario }}}} went without a data message for over "
                f"{after} in the last {w}; {t.ws_stall.max} allowed.",
                labels,
            )
        )
    for name, histogram, what, judged in (
        ("LoadsvcWsConnectSlow", NAMES.ws_connect_duration, "connect", "ws_connect_time"),
        ("LoadsvcWsReconnectSlow", NAMES.ws_reconnect_duration, "reconnect", "ws_reconnect_time"),
    ):
        threshold = je.quantiles.get(judged)
        if threshold is not None:
            rules.append(_time_alert(name, histogram, what, threshold, labels, profile))
    return rules


def _time_alert(
    name: str,
    histogram: str,
    what: str,
    threshold: LatencyThreshold,
    labels: dict[str, str],
    profile: TimingProfile,
) -> Rule:
    """Fewer than ``quantile`` of the connects (or reconnects) within the limit: exact."""
    w = prom_duration(profile.rate_window_s)
    limit = prom_duration(threshold.max_s)
    within = _sum(
        f"rate({histogram}_bucket{matchers({**labels, 'le': le_label(threshold.max_s)})}[{w}])"
    )
    every = _sum(f"rate({histogram}_bucket{matchers({**labels, 'le': '+Inf'})}[{w}])")
    q = threshold.label
    return alert(
        name,
        f"{within}\n/\n{every}\n< {number(threshold.quantile)}",
        profile.for_s,
        "warning",
        f"WS {what} {q} of {{{{ $labels.endpoint }}}} ({{{{ $labels.scenario }}}}) above {limit}",
        f"Over the last {w} only {{{{ $value | humanizePercentage }}}} of the {what}s to "
        f"{{{{ $labels.endpoint }}}} in scenario {{{{ $labels.scenario }}}} took at most "
        f"{limit}; the threshold needs {threshold.quantile * 100:g}% ({q} <= {limit}).",
        labels,
    )


def stream_rules(scenarios: tuple[ScenarioSpec, ...], profile: TimingProfile) -> list[Rule]:
    """Stream alerts of every WS endpoint of every scenario, in configuration order, once each."""
    rules: list[Rule] = []
    for scenario in scenarios:
        for je in scenario.judged_endpoints:
            for rule in stream_alerts(scenario, je, profile):
                if rule not in rules:
                    rules.append(rule)
    return rules
