"""The overview dashboard: every scenario of the configuration on one page.

One row per scenario; its panels are chosen by what the scenario measures
(REST, WS or both), and each endpoint's latency and error-ratio panels draw its
configured limit. Latency quantiles and error ratios are the recorded series
the alerts judge, so the line that crosses the threshold is the alerted one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.models import dashboard as dash_m

from loadsvc.config.spec import Config, ScenarioSpec
from loadsvc.metrics import NAMES
from loadsvc.protocols import PROTOCOLS, JudgedEndpoint
from loadsvc.render.header import describe_schedule, provenance
from loadsvc.render.panels import Board, Query, RunAnnotation, encode, stat, timeseries
from loadsvc.render.profile import TimingProfile, prom_duration
from loadsvc.render.promql import (
    NOT_DATA,
    error_ratio_record,
    latency_histogram,
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


def _latency_panel(scenario: ScenarioSpec, je: JudgedEndpoint, profile: TimingProfile) -> Any:
    latency = je.latency
    histogram = latency_histogram(je.protocol)
    what = je.protocol.latency_title
    labels = {"scenario": scenario.name, "endpoint": je.endpoint}
    record = quantile_record(histogram, profile.rate_window_s)
    quantiles = sorted({*DASHBOARD_QUANTILES, latency.quantile})
    return timeseries(
        f"{je.endpoint} {what} (limit {latency.label} ≤ {prom_duration(latency.max_s)})",
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


def _error_panel(scenario: ScenarioSpec, je: JudgedEndpoint, profile: TimingProfile) -> Any:
    limit = je.limits["error_ratio"]
    labels = {"scenario": scenario.name, "endpoint": je.endpoint}
    return timeseries(
        f"{je.endpoint} error ratio (limit {limit * 100:g}%)",
        f"Failed share of the {je.protocol.traffic} traffic over "
        f"{prom_duration(profile.rate_window_s)}; the dashed line is the configured limit.",
        "percentunit",
        [Query(f"{error_ratio_record(profile.rate_window_s)}{matchers(labels)}", "error ratio")],
        limit=limit,
        width=8,
    )


def _stream_limit(scenario: ScenarioSpec, name: str) -> float | None:
    """The limit of stream judgement ``name`` shared by every stream endpoint of ``scenario``
    (None when it is off on any, or differs between them: the drill-down draws each one)."""
    limits = {je.limits.get(name) for je in scenario.judged_endpoints if je.protocol.connections}
    return limits.pop() if len(limits) == 1 else None


def _rest_panels(scenario: ScenarioSpec) -> list[Any]:
    """The REST panels of a scenario above its endpoints' own."""
    s = matchers({"scenario": scenario.name})
    return [
        timeseries(
            "REST requests/s",
            "Requests per second by endpoint, every outcome.",
            "reqps",
            [Query(f"sum by (endpoint) (rate({NAMES.http_requests}{s}{RATE}))", "{{endpoint}}")],
            width=8,
        )
    ]


def _ws_panels(scenario: ScenarioSpec) -> list[Any]:
    """The WS panels of a scenario above its endpoints' own."""
    s = matchers({"scenario": scenario.name})
    data = matchers({"scenario": scenario.name}, NOT_DATA)
    floor = _stream_limit(scenario, "ws_delivery_rate")
    return [
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
    ]


def _ws_tail_panels(scenario: ScenarioSpec) -> list[Any]:
    """The WS panels of a scenario below its endpoints' own: reconnects and missed frames."""
    s = matchers({"scenario": scenario.name})
    reconnect = _stream_limit(scenario, "ws_reconnect_time")
    return [
        timeseries(
            "WS reconnect time",
            "From losing or closing a connection to the next one being open."
            + ("" if reconnect is None else " The dashed line is the limit (ws_reconnect_time)."),
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
    ]


PanelMaker = Callable[[ScenarioSpec], list[Any]]
# Each protocol's panels of a scenario row, above and below its endpoints' latency and error
# panels (keys: the protocol table's), drawn when the scenario has endpoints of that protocol.
PROTOCOL_PANELS: dict[str, tuple[PanelMaker, PanelMaker]] = {
    "http": (_rest_panels, lambda _: []),
    "ws": (_ws_panels, _ws_tail_panels),
}


def _scenario_row(board: Board, scenario: ScenarioSpec, profile: TimingProfile) -> None:
    s = matchers({"scenario": scenario.name})
    judged = scenario.judged_endpoints
    used = [PROTOCOL_PANELS[p] for p in PROTOCOLS if any(je.kind == p for je in judged)]
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
    for above, _ in used:
        board.add(*above(scenario))
    shown: set[tuple[str, str]] = set()
    for je in judged:
        if (je.kind, je.endpoint) in shown:
            continue  # a second method of the same endpoint shares its panels
        shown.add((je.kind, je.endpoint))
        board.add(_latency_panel(scenario, je, profile), _error_panel(scenario, je, profile))
    for _, below in used:
        board.add(*below(scenario))


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
