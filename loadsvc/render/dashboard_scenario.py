"""The scenario drill-down dashboard: everything about one scenario, picked with ``$scenario``.

Its limits differ per scenario, so instead of static threshold steps it draws the
recorded configuration limits (``scenario_endpoint:loadsvc_threshold_limit:config``)
as dashed red series next to the measured quantiles and ratios.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.models import dashboard as dash_m

from loadsvc.config.spec import Config
from loadsvc.metrics import NAMES
from loadsvc.protocols import PROTOCOLS
from loadsvc.render.dashboard_baseline import baseline_row
from loadsvc.render.dashboard_live import live_row
from loadsvc.render.dashboard_overview import RATE, VERDICT_MAPPINGS, run_annotations
from loadsvc.render.header import provenance
from loadsvc.render.panels import Board, Query, datasource, encode, stat, timeseries
from loadsvc.render.profile import TimingProfile, prom_duration
from loadsvc.render.promql import (
    NOT_DATA,
    THRESHOLD_LIMIT_RECORD,
    error_ratio_record,
    latency_histogram,
    quantile_record,
)
from loadsvc.render.recording import DASHBOARD_QUANTILES
from loadsvc.render.stream import delivery_rate_expr, missed_ratio_expr, stalls_expr

UID = "loadsvc-scenario"
S = '{scenario="$scenario"}'


def _sel(extra: str) -> str:
    return '{scenario="$scenario", ' + extra + "}"


def _quantiles(name: str) -> list[Query]:
    return [
        Query(
            f"histogram_quantile({q:g}, sum by (endpoint, le) (rate({name}_bucket{S}{RATE})))",
            f"{{{{endpoint}}}} p{q * 100:g}",
        )
        for q in DASHBOARD_QUANTILES
    ]


def _load(board: Board) -> None:
    board.row("Load")
    board.add(
        timeseries(
            "Virtual users",
            "Running users (all replicas) against the load shape's target, and the users "
            "started more than a tick late (a run whose late starts missed over 1 % of the "
            "load asked for is generator_bound).",
            "none",
            [
                Query(f"sum({NAMES.scenario_users}{S})", "running"),
                Query(f"sum({NAMES.scenario_target_users}{S})", "target"),
                Query(f"sum({NAMES.scenario_running}{S})", "replicas running"),
                Query(f"sum(increase({NAMES.scenario_late_starts}{S}{RATE}))", "started late"),
            ],
            width=8,
        ),
        timeseries(
            "REST requests/s by outcome",
            "Every outcome other than ok counts as an error.",
            "reqps",
            [
                Query(
                    f"sum by (endpoint, outcome) (rate({NAMES.http_requests}{S}{RATE}))",
                    "{{endpoint}} {{outcome}}",
                )
            ],
            width=8,
        ),
        timeseries(
            "WS messages/s by outcome",
            "invalid and malformed count as errors; status frames are not data.",
            "short",
            [
                Query(
                    f"sum by (endpoint, outcome) (rate({NAMES.ws_messages}{S}{RATE}))",
                    "{{endpoint}} {{outcome}}",
                )
            ],
            width=8,
        ),
    )


def _limits(threshold: str) -> Query:
    return Query(
        THRESHOLD_LIMIT_RECORD + _sel(f'threshold="{threshold}"'),
        "{{endpoint}} limit",
    )


def _thresholds(board: Board, profile: TimingProfile) -> None:
    w = prom_duration(profile.rate_window_s)
    board.row("Latency and errors against the thresholds")
    for protocol in PROTOCOLS.values():
        histogram, what, threshold = (
            latency_histogram(protocol),
            protocol.latency_title,
            protocol.latency.name,
        )
        board.add(
            timeseries(
                what,
                f"Recorded quantiles over {w} (what the alerts judge) and the configured limit.",
                "s",
                [
                    Query(
                        f"{quantile_record(histogram, profile.rate_window_s)}{S}",
                        "{{endpoint}} p{{quantile}}",
                    ),
                    _limits(threshold),
                ],
                width=12,
            )
        )
    board.add(
        timeseries(
            "Error ratio",
            f"Recorded error ratio over {w} per endpoint and the configured limit.",
            "percentunit",
            [
                Query(f"{error_ratio_record(profile.rate_window_s)}{S}", "{{endpoint}}"),
                _limits("error_ratio"),
            ],
            width=12,
        ),
        timeseries(
            "Last verdict: measured value",
            "What the last run's in-process verdict measured per threshold (seconds or ratio).",
            "none",
            [
                Query(
                    f"max by (endpoint, threshold) ({NAMES.threshold_value}{S})",
                    "{{endpoint}} {{threshold}}",
                )
            ],
            width=12,
        ),
    )


def _streams(board: Board, profile: TimingProfile) -> None:
    """The WS stream judgements over the alerts' window, each with its configured limit."""
    w = prom_duration(profile.rate_window_s)
    data = _sel(NOT_DATA)
    board.add(
        timeseries(
            "Delivery rate per connection",
            f"Data messages per connection-second over {w} (ws_delivery_rate, what the alert "
            "judges); the dashed line is the configured floor: below it the stream fails.",
            "short",
            [Query(delivery_rate_expr(S, data, w), "{{endpoint}}"), _limits("ws_delivery_rate")],
            width=8,
        ),
        timeseries(
            "Missed share of expected frames",
            f"Missed / (missed + delivered) over {w} (ws_missed_ratio, from sequence gaps) "
            "and the configured limit.",
            "percentunit",
            [Query(missed_ratio_expr(S, data, w), "{{endpoint}}"), _limits("ws_missed_ratio")],
            width=8,
        ),
        timeseries(
            "Stalls",
            f"Connections silent past the stall limit in the last {w} (ws_stalled) and the "
            "stalls allowed.",
            "none",
            [Query(stalls_expr(S, w), "{{endpoint}}"), _limits("ws_stalled")],
            width=8,
        ),
    )


def _connections(board: Board, profile: TimingProfile) -> None:
    board.row("WebSocket connections")
    board.add(
        timeseries(
            "Open connections",
            "Open WS connections, all replicas.",
            "none",
            [Query(f"sum by (endpoint) ({NAMES.ws_connections}{S})", "{{endpoint}}")],
            width=8,
        ),
        timeseries(
            "Connect time",
            "TCP connect plus WS handshake, and the configured limit (ws_connect_time).",
            "s",
            [*_quantiles(NAMES.ws_connect_duration), _limits("ws_connect_time")],
            width=8,
        ),
        timeseries(
            "Reconnect time",
            "From losing or closing a connection to the next one being open, and the "
            "configured limit (ws_reconnect_time).",
            "s",
            [*_quantiles(NAMES.ws_reconnect_duration), _limits("ws_reconnect_time")],
            width=8,
        ),
        timeseries(
            "Connection errors/s by reason",
            "Failed connects and unexpected closes.",
            "short",
            [
                Query(
                    f"sum by (endpoint, reason) (rate({NAMES.ws_connection_errors}{S}{RATE}))",
                    "{{endpoint}} {{reason}}",
                )
            ],
            width=8,
        ),
        timeseries(
            "Missed messages/s",
            "Sequence gaps: messages the server's full send queue dropped.",
            "short",
            [
                Query(
                    f"sum by (endpoint) (rate({NAMES.ws_messages_missed}{S}{RATE}))",
                    "{{endpoint}}",
                )
            ],
            width=8,
        ),
        timeseries(
            "Message interval",
            "Time between messages on a connection: the 500 ms throttle keeps it near 0.5 s; "
            "long tails are stalls.",
            "s",
            _quantiles(NAMES.ws_message_interval),
            width=8,
        ),
    )
    _streams(board, profile)


def _runs(board: Board) -> None:
    board.row("Runs and schedule")
    board.add(
        stat(
            "Last verdict",
            "The last run's verdict; failed if any replica's shard failed.",
            "none",
            [Query(f"min({NAMES.scenario_last_run_passed}{S})", "verdict", instant=True)],
            mappings=VERDICT_MAPPINGS,
        ),
        stat(
            "Last run ended",
            "When the last run (or verdict window) ended.",
            "dateTimeFromNow",
            [
                Query(
                    f"max({NAMES.scenario_last_run_timestamp}{S}) * 1000",
                    "ended",
                    instant=True,
                )
            ],
        ),
        stat(
            "Next run",
            "When the scheduler will next start the scenario.",
            "dateTimeFromNow",
            [
                Query(
                    f"min({NAMES.scenario_next_run_timestamp}{S} > 0) * 1000",
                    "next",
                    instant=True,
                )
            ],
        ),
        stat(
            "Triggers skipped",
            "Triggers skipped in the time range because a run was still in progress.",
            "none",
            [
                Query(
                    f"sum(increase({NAMES.scenario_triggers_skipped}{S}[$__range])) or vector(0)",
                    "skipped",
                    instant=True,
                )
            ],
        ),
        timeseries(
            "Runs by result",
            "Finished runs per result in each interval.",
            "none",
            [
                Query(
                    f"sum by (result) (increase({NAMES.scenario_runs}{S}[$__rate_interval]))",
                    "{{result}}",
                )
            ],
            width=12,
        ),
        timeseries(
            "Thresholds breached by the last verdict",
            "1 while the last verdict breached the threshold.",
            "none",
            [
                Query(
                    f"max by (endpoint, threshold) ({NAMES.threshold_breached}{S})",
                    "{{endpoint}} {{threshold}}",
                )
            ],
            width=12,
        ),
    )


def _generator(board: Board) -> None:
    board.row("Generator health")
    board.add(
        timeseries(
            "Event-loop lag p99 per replica",
            "The generator's own queueing delay (over the rate window, and over the last 10 s "
            "as busy judges it); "
            "above the trust limit the replica is busy, and a breach within the lag is "
            "generator_bound.",
            "s",
            [
                Query(
                    "histogram_quantile(0.99, sum by (instance, le) "
                    f"(rate({NAMES.event_loop_lag}_bucket{RATE})))",
                    "{{instance}}",
                ),
                Query(f"max by (instance) ({NAMES.generator_lag_p99})", "10 s {{instance}}"),
                Query(
                    f"max by (instance) ({NAMES.generator_lag_limit})",
                    "trust limit {{instance}}",
                ),
            ],
            width=12,
        ),
        timeseries(
            "Generator busy per replica",
            "1 while a replica's lag p99 is over its trust limit (loadsvc.lag.is_busy).",
            "none",
            [Query(f"max by (instance) ({NAMES.generator_busy})", "{{instance}}")],
            width=12,
        ),
    )


def scenario_dashboard(config: Config, profile: TimingProfile) -> dict[str, Any]:
    """The drill-down dashboard as Grafana JSON data."""
    note = " ".join(provenance(config, profile))
    first = config.scenarios[0].name if config.scenarios else ""
    variable = (
        dash_b.QueryVariable("scenario")
        .label("Scenario")
        .datasource(datasource())
        .query(f"label_values({THRESHOLD_LIMIT_RECORD}, scenario)")
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .current(dash_m.VariableOption(selected=True, text=first, value=first))
    )
    board = Board(
        dash_b.Dashboard("loadsvc: scenario")
        .uid(UID)
        .description(note)
        .tags(["loadsvc"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .with_variable(variable)
    )
    _load(board)
    live_row(board)
    _thresholds(board, profile)
    _connections(board, profile)
    _runs(board)
    baseline_row(board)
    _generator(board)
    return encode(board.builder, run_annotations('scenario="$scenario"'))
