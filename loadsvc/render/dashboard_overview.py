"""The overview dashboard: every scenario of the configuration on one page.

One row per scenario; its panels are chosen by what the scenario measures
(REST, WS or both), and each endpoint's latency and error-ratio panels draw its
configured limit. Latency quantiles and error ratios are the recorded series
the alerts judge, so the line that crosses the threshold is the alerted one.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.models import dashboard as dash_m

from loadsvc.config.spec import Config, EndpointRef, ScenarioSpec
from loadsvc.metrics import NAMES
from loadsvc.render.header import describe_schedule, provenance
from loadsvc.render.panels import Board, Query, RunAnnotation, encode, stat, timeseries
from loadsvc.render.profile import TimingProfile, prom_duration
from loadsvc.render.promql import (
    HTTP_LATENCY,
    NOT_DATA,
    WS_LATENCY,
    error_ratio_record,
    matchers,
    quantile_record,
)
from loadsvc.render.recording import DASHBOARD_QUANTILES

UID = "loadsvc-overview"
RATE = "[$__rate_interval]"
VERDICT_MAPPINGS = (("1", "passed", "green"), ("0", "failed", "red"))


def run_annotations(scenario_matcher: str = "") -> list[RunAnnotation]:
    """Finished runs as annotations: green when passed, red otherwise."""
    extra = f", {scenario_matcher}" if scenario_matcher else ""
    runs = NAMES.scenario_runs

    def expr(op: str) -> str:
        return f'sum by (scenario, result) (increase({runs}{{result{op}"passed"{extra}}}[2m])) > 0'

    return [
        RunAnnotation("Runs passed", expr("="), "green"),
        RunAnnotation("Runs failed", expr("!="), "red"),
    ]


def _fleet(board: Board) -> None:
    board.row("Fleet")
    board.add(
        stat(
            "Replicas up",
            "loadsvc replicas Prometheus scrapes successfully.",
            "none",
            [Query('sum(up{job="loadsvc"})', "up", instant=True)],
        ),
        stat(
            "Scenarios running",
            "Scenarios with a run in progress on at least one replica.",
            "none",
            [
                Query(
                    f"count(max by (scenario) ({NAMES.scenario_running}) == 1) or vector(0)",
                    "running",
                    instant=True,
                )
            ],
        ),
        stat(
            "Firing loadsvc alerts",
            "Alerts of the loadsvc rules now firing.",
            "none",
            [
                Query(
                    'count(ALERTS{alertstate="firing", alertname=~"Loadsvc.*"}) or vector(0)',
                    "firing",
                    instant=True,
                )
            ],
        ),
        stat(
            "Generator busy",
            "Replicas whose event loop lags: their measurements are not trustworthy.",
            "none",
            [Query(f"sum({NAMES.generator_busy}) or vector(0)", "busy", instant=True)],
        ),
    )


def _latency_panel(scenario: ScenarioSpec, ref: EndpointRef, profile: TimingProfile) -> Any:
    t = scenario.thresholds.for_endpoint(ref.endpoint)
    latency = t.http_latency if ref.kind == "http" else t.ws_delivery_latency
    histogram = HTTP_LATENCY if ref.kind == "http" else WS_LATENCY
    what = "REST latency" if ref.kind == "http" else "WS delivery latency"
    labels = {"scenario": scenario.name, "endpoint": ref.endpoint}
    record = quantile_record(histogram, profile.rate_window_s)
    quantiles = sorted({*DASHBOARD_QUANTILES, latency.quantile})
    return timeseries(
        f"{ref.endpoint} {what} (limit {latency.label} ≤ {prom_duration(latency.max_s)})",
        f"Quantiles over {prom_duration(profile.rate_window_s)}, all replicas merged; "
        f"the dashed line is the configured limit of {latency.label}.",
        "s",
        [
            Query(f"{record}{matchers({**labels, 'quantile': f'{q:g}'})}", f"p{q * 100:g}")
            for q in quantiles
        ],
        limit=latency.max_s,
        width=16,
    )


def _error_panel(scenario: ScenarioSpec, ref: EndpointRef, profile: TimingProfile) -> Any:
    limit = scenario.thresholds.for_endpoint(ref.endpoint).error_ratio
    labels = {"scenario": scenario.name, "endpoint": ref.endpoint}
    return timeseries(
        f"{ref.endpoint} error ratio (limit {limit * 100:g}%)",
        f"Failed share of the {ref.kind.upper()} traffic over "
        f"{prom_duration(profile.rate_window_s)}; the dashed line is the configured limit.",
        "percentunit",
        [Query(f"{error_ratio_record(profile.rate_window_s)}{matchers(labels)}", "error ratio")],
        limit=limit,
        width=8,
    )


def _stream_limit(scenario: ScenarioSpec, name: str) -> float | None:
    """The limit of stream judgement ``name`` shared by every WS endpoint of ``scenario``
    (None when it is off on any, or differs between them: the drill-down draws each one)."""
    limits = {
        scenario.thresholds.for_endpoint(r.endpoint).stream_limits().get(name)
        for r in scenario.endpoints()
        if r.kind == "ws"
    }
    return limits.pop() if len(limits) == 1 else None


def _scenario_row(board: Board, scenario: ScenarioSpec, profile: TimingProfile) -> None:
    s = matchers({"scenario": scenario.name})
    refs = scenario.endpoints()
    has_http = any(r.kind == "http" for r in refs)
    has_ws = any(r.kind == "ws" for r in refs)
    board.row(f"{scenario.name} ({describe_schedule(scenario.schedule)})")
    board.add(
        timeseries(
            "Virtual users",
            "Running users against what the load shape asks for: a ramp shows as a slope.",
            "none",
            [
                Query(f"sum({NAMES.scenario_users}{s})", "running"),
                Query(f"sum({NAMES.scenario_target_users}{s})", "target"),
            ],
            width=8,
        )
    )
    if has_http:
        board.add(
            timeseries(
                "REST requests/s",
                "Requests per second by endpoint, every outcome.",
                "reqps",
                [
                    Query(
                        f"sum by (endpoint) (rate({NAMES.http_requests}{s}{RATE}))",
                        "{{endpoint}}",
                    )
                ],
                width=8,
            )
        )
    if has_ws:
        data = matchers({"scenario": scenario.name}, NOT_DATA)
        floor = _stream_limit(scenario, "ws_delivery_rate")
        board.add(
            timeseries(
                "WS messages/s per connection",
                "Data messages per second on one connection; the 500 ms throttle caps it near 2."
                + ("" if floor is None else " The dashed line is the floor (ws_delivery_rate)."),
                "short",
                [
                    Query(
                        f"sum by (endpoint) (rate({NAMES.ws_messages}{data}{RATE}))\n"
                        f"/ sum by (endpoint) ({NAMES.ws_connections}{s})",
                        "{{endpoint}}",
                    )
                ],
                limit=floor,
                width=8,
            ),
            timeseries(
                "Open WS connections",
                "Connections open now, all replicas.",
                "none",
                [Query(f"sum by (endpoint) ({NAMES.ws_connections}{s})", "{{endpoint}}")],
                width=8,
            ),
        )
    for ref in refs:
        if ref.kind == "http" and any(
            r.kind == "http" and r.endpoint == ref.endpoint for r in refs[: refs.index(ref)]
        ):
            continue  # a second method of the same endpoint shares its panels
        board.add(_latency_panel(scenario, ref, profile), _error_panel(scenario, ref, profile))
    if has_ws:
        reconnect = _stream_limit(scenario, "ws_reconnect_time")
        board.add(
            timeseries(
                "WS reconnect time",
                "From losing or closing a connection to the next one being open."
                + (
                    ""
                    if reconnect is None
                    else " The dashed line is the limit (ws_reconnect_time)."
                ),
                "s",
                [
                    Query(
                        f"histogram_quantile({q:g}, sum by (le) "
                        f"(rate({NAMES.ws_reconnect_duration}_bucket{s}{RATE})))",
                        f"p{q * 100:g}",
                    )
                    for q in DASHBOARD_QUANTILES
                ],
                limit=reconnect,
                width=12,
            ),
            timeseries(
                "Missed WS messages/s",
                "Messages the server never delivered (sequence gaps): its full send queue dropped them.",
                "short",
                [
                    Query(
                        f"sum by (endpoint) (rate({NAMES.ws_messages_missed}{s}{RATE}))",
                        "{{endpoint}}",
                    )
                ],
                width=12,
            ),
        )


def overview_dashboard(config: Config, profile: TimingProfile) -> dict[str, Any]:
    """The overview dashboard as Grafana JSON data."""
    note = " ".join(provenance(config, profile))
    board = Board(
        dash_b.Dashboard("loadsvc: overview")
        .uid(UID)
        .description(note)
        .tags(["loadsvc"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .link(
            dash_b.DashboardLink("Scenario drill-down")
            .type(dash_m.DashboardLinkType.DASHBOARDS)
            .tags(["loadsvc"])
            .include_vars(False)
            .keep_time(True)
        )
    )
    _fleet(board)
    for scenario in config.scenarios:
        _scenario_row(board, scenario, profile)
    return encode(board.builder, run_annotations())
