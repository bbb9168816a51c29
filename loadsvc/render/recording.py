"""Recording rules: the global (all-replica) rates, quantiles and ratios alerts and dashboards read.

Every rule aggregates with ``sum by (scenario, endpoint[, le])``, so replicas
(``instance``, ``shard``, ``pod``) and any target label vanish and the result is
the verdict of the whole fleet; histograms make merged quantiles exact.
"""

from __future__ import annotations

from collections.abc import Callable

from loadsvc.config.spec import Config
from loadsvc.metrics import NAMES
from loadsvc.protocols import HTTP, PROTOCOLS, WS, JudgedEndpoint
from loadsvc.render.profile import TimingProfile, prom_duration
from loadsvc.render.promql import (
    LATENCY_HISTOGRAMS,
    SCENARIO_ENDPOINT,
    SCENARIO_ENDPOINT_LE,
    THRESHOLD_LIMIT_RECORD,
    bucket_rate_record,
    error_ratio_record,
    number,
    quantile_record,
)

Rule = dict[str, object]
Group = dict[str, object]

# Quantiles recorded for dashboards; configured threshold quantiles are added.
DASHBOARD_QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99)


def latency_quantiles(config: Config) -> tuple[float, ...]:
    """The dashboard quantiles plus every quantile a threshold uses, ascending."""
    out = set(DASHBOARD_QUANTILES)
    for scenario in config.scenarios:
        for t in scenario.thresholds.all():
            out.update(p.latency_of(t).quantile for p in PROTOCOLS.values())
    return tuple(sorted(out))


def http_error_ratio(window_s: float) -> str:
    """REST error ratio: requests whose outcome is not ``ok`` over all requests."""
    w = prom_duration(window_s)
    errors = "|".join(HTTP.error_outcomes)
    total = f"sum by ({SCENARIO_ENDPOINT}) (rate({NAMES.http_requests}[{w}]))"
    # `or total * 0`: a ratio of 0, not an empty result, when no error series exists yet.
    return (
        "(\n"
        f'  sum by ({SCENARIO_ENDPOINT}) (rate({NAMES.http_requests}{{outcome=~"{errors}"}}[{w}]))\n'
        "  or\n"
        f"  {total} * 0\n"
        ")\n"
        "/\n"
        f"{total}"
    )


def ws_error_ratio(window_s: float) -> str:
    """WS error ratio: (bad frames + connection errors) / (frames + connects + connection errors).

    One name-regex selector per side sums the three counters even when one of
    them has no series yet. Their label sets cannot collide after ``rate``
    drops the name: frames carry ``outcome``, errors ``reason``, connects neither.
    Connection errors have no ``outcome`` label, which the empty alternative matches.
    """
    w = prom_duration(window_s)
    bad = "|".join(WS.error_outcomes)
    numerator_names = f"{NAMES.ws_messages}|{NAMES.ws_connection_errors}"
    all_names = (
        f"{NAMES.ws_messages}|{NAMES.ws_connect_duration}_count|{NAMES.ws_connection_errors}"
    )
    total = f'sum by ({SCENARIO_ENDPOINT}) (rate({{__name__=~"{all_names}"}}[{w}]))'
    return (
        "(\n"
        f"  sum by ({SCENARIO_ENDPOINT}) (\n"
        f'    rate({{__name__=~"{numerator_names}", outcome=~"{bad}|"}}[{w}])\n'
        "  )\n"
        "  or\n"
        f"  {total} * 0\n"
        ")\n"
        "/\n"
        f"{total}"
    )


# How each protocol's error ratio is read from its counters, by protocol (the table's keys).
ERROR_RATIO: dict[str, Callable[[float], str]] = {"http": http_error_ratio, "ws": ws_error_ratio}


def _latency_group(config: Config, profile: TimingProfile) -> Group:
    rules: list[Rule] = []
    for histogram in LATENCY_HISTOGRAMS:
        for window in sorted({profile.rate_window_s, profile.sustained_window_s}):
            rules.append(
                {
                    "record": bucket_rate_record(histogram, window),
                    "expr": (
                        f"sum by ({SCENARIO_ENDPOINT_LE}) "
                        f"(rate({histogram}_bucket[{prom_duration(window)}]))"
                    ),
                }
            )
        for q in latency_quantiles(config):
            rules.append(
                {
                    "record": quantile_record(histogram, profile.rate_window_s),
                    "expr": (
                        f"histogram_quantile({number(q)}, "
                        f"{bucket_rate_record(histogram, profile.rate_window_s)})"
                    ),
                    "labels": {"quantile": number(q)},
                }
            )
    return {"name": "loadsvc-latency", "rules": rules}


def _error_group(profile: TimingProfile) -> Group:
    rules: list[Rule] = []
    for window in profile.windows():
        for protocol in PROTOCOLS:
            rules.append(
                {
                    "record": error_ratio_record(window),
                    "expr": ERROR_RATIO[protocol](window),
                    "labels": {"protocol": protocol},
                }
            )
    return {"name": "loadsvc-errors", "rules": rules}


def limit_rules(scenario: str, je: JudgedEndpoint) -> list[Rule]:
    """Constant series of one endpoint's configured limits: each threshold judged there (the
    latency in seconds, the error ratio, and on a stream each judgement that is on: the
    delivery-rate floor, the missed share where frames carry a sequence, the stalls allowed,
    the connect and reconnect times), with the quantile of those judged at one."""
    base = {"scenario": scenario, "endpoint": je.endpoint}
    rules: list[Rule] = []
    for name, limit in je.limits.items():
        labels = {**base, "threshold": name}
        quantile = je.quantiles.get(name)
        if quantile is not None:
            labels["quantile"] = number(quantile.quantile)
        rules.append(
            {"record": THRESHOLD_LIMIT_RECORD, "expr": f"vector({number(limit)})", "labels": labels}
        )
    return rules


def _limit_group(config: Config) -> Group:
    rules: list[Rule] = []
    for scenario in config.scenarios:
        for je in scenario.judged_endpoints:
            rules.extend(limit_rules(scenario.name, je))
    return {"name": "loadsvc-threshold-limits", "rules": _unique(rules)}


def _unique(rules: list[Rule]) -> list[Rule]:
    """Drop repeated rules (one endpoint served with two methods has one set of limits)."""
    seen: list[Rule] = []
    for rule in rules:
        if rule not in seen:
            seen.append(rule)
    return seen


def recording_rules(config: Config, profile: TimingProfile) -> dict[str, list[Group]]:
    """The whole recording-rule file as data."""
    return {
        "groups": [
            _latency_group(config, profile),
            _error_group(profile),
            _limit_group(config),
        ]
    }


HEADER_NOTES: tuple[str, ...] = (
    "",
    "Recording rules of loadsvc. Naming: level:metric:operation (Prometheus convention).",
    "Every rule sums by (scenario, endpoint[, le]): replicas (instance, shard, pod) are",
    "summed away, so the quantiles and ratios are those of the whole fleet; histograms",
    "make the merged quantiles exact.",
    "- scenario_endpoint_le:<histogram>_bucket:rate<W>: the bucket rates the latency",
    "  alerts divide (share of observations <= the limit, exact at a bucket bound).",
    "- scenario_endpoint:<histogram>:histogram_quantile_rate<W>{quantile}: for dashboards",
    "  and alert descriptions.",
    "- scenario_endpoint:loadsvc_errors:ratio_rate<W>{protocol}: error ratio per endpoint,",
    "  at every window the burn-rate alerts need.",
    "- scenario_endpoint:loadsvc_threshold_limit:config: the configured limits as series",
    "  (latency, error ratio, and the WS stream judgements that are on), so the dashboards",
    "  can draw the limit of whichever scenario and endpoint is shown.",
)
