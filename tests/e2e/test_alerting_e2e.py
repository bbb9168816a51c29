"""Alerts and dashboards end to end, against real processes (issue #4, item 5).

One stack for the module (``conftest.stack``): the reference target; ``loadsvc
serve`` running market_stream (20 WS users) and foreign_flow (20 REST users paced
at 500 ms) continuously; Prometheus with the rules rendered from the default
configuration with the end-to-end profile (FAST halved), scraping and evaluating every second;
Alertmanager with the committed routing and inhibition; a webhook receiver.

The module fixtures do the work once, in this order, and the tests assert on what
they recorded:

1. ``healthy_window`` watches the fault-free run for 2 x (window + for).
2. ``fault_runs`` injects three faults in two lanes, one per scenario: the two
   foreign_flow faults one after the other, and the market_stream fault alongside
   the first (another scenario and endpoint: no alert, rule or inhibition of one
   lane reads the other's). Each fault is removed as soon as its alert fires in
   Prometheus (the alert then stays firing for one rate window, long enough to be
   notified), and the next of its lane is injected right away, so the waits for
   the resolved notifications overlap. Clearing early also keeps the 30 % error
   fault shorter than the ~12 s after which LoadsvcErrorBudgetBurn (critical)
   would fire and, by the committed inhibition rule, mute the
   LoadsvcErrorRatioHigh warning, including its resolved notification.
3. The dashboard test then runs every panel query over the whole run.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from loadsvc.config.spec import Config
from loadsvc.render.files import ALERT_RULES, OVERVIEW_DASHBOARD, SCENARIO_DASHBOARD
from loadsvc.render.promql import (
    HTTP_LATENCY,
    THRESHOLD_LIMIT_RECORD,
    WS_LATENCY,
    error_ratio_record,
    number,
    quantile_record,
)
from loadsvc.render.queries import DashboardQuery, dashboard_queries, instantiate
from tests.e2e.support import E2E_PROFILE as PROFILE
from tests.e2e.support import SCENARIOS, ReceivedAlert, Stack
from tests.support import scaled, wait_for

pytestmark = pytest.mark.slow

FOREIGN = "/api/market/foreign-detail"
MARKET = "/ws/market"
# Long enough for any breach present during the run to have fired: one full rate
# window of start-up data plus `for`, then a window of steady-state data plus `for`.
HEALTHY_SPAN_S = 2 * (PROFILE.rate_window_s + PROFILE.for_s)


# -- measured values in the annotations ----------------------------------------------

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


def measured_seconds(description: str) -> float:
    """The quantile the latency description reports (``... Measured p95 over 20s: 297.5ms.``)."""
    m = re.search(r"Measured p[\d.]+ over \w+: ([\d.]+)(µs|us|ms|s)\b", description)
    assert m, f"no measured latency in {description!r}"
    return float(m.group(1)) * _UNITS[m.group(2)]


def measured_ratio(description: str) -> float:
    """The ratio the error description starts with (``28.57% of the http traffic ...``)."""
    m = re.match(r"([\d.]+)% of ", description)
    assert m, f"no measured ratio in {description!r}"
    return float(m.group(1)) / 100


# -- the faults -----------------------------------------------------------------------


@dataclass(frozen=True)
class FaultCase:
    """A fault of the reference target and the alert it must bring."""

    name: str
    faults: dict[str, Any]
    alertname: str
    scenario: str
    endpoint: str
    measured: Callable[[str], float]
    # The description must report at least this (seconds, or a ratio).
    measured_at_least: float

    @property
    def labels(self) -> dict[str, str]:
        """The labels that identify the alert."""
        return {"alertname": self.alertname, "scenario": self.scenario, "endpoint": self.endpoint}

    @property
    def removal(self) -> dict[str, dict[str, None]]:
        """The ``POST /admin/faults`` body that removes this fault and no other."""
        return {key: dict.fromkeys(paths) for key, paths in self.faults.items()}


CASES = (
    # +250 ms on every request: p95 lands in the (0.25, 0.3] bucket.
    FaultCase(
        "rest_latency",
        {"latency_ms": {FOREIGN: 250}},
        "LoadsvcRestLatencyHigh",
        "foreign_flow",
        FOREIGN,
        measured_seconds,
        0.25,
    ),
    # Frames delivered 150 ms after their publish stamp: p99 in the (0.15, 0.2] bucket.
    FaultCase(
        "ws_delay",
        {"ws_delay_ms": {MARKET: 150}},
        "LoadsvcWsDeliveryLatencyHigh",
        "market_stream",
        MARKET,
        measured_seconds,
        0.15,
    ),
    # 30 % of requests fail; when it fires >= for (5 s) of the 10 s window failed.
    FaultCase(
        "error_ratio",
        {"error_ratio": {FOREIGN: 0.3}},
        "LoadsvcErrorRatioHigh",
        "foreign_flow",
        FOREIGN,
        measured_ratio,
        0.10,
    ),
)


@dataclass
class FaultRun:
    """What happened to one fault: when it was on, and what the webhook received."""

    case: FaultCase
    on: float
    off: float = 0.0
    firing: ReceivedAlert | None = None
    resolved: ReceivedAlert | None = None
    error: str | None = None  # why the run did not complete


@dataclass(frozen=True)
class HealthyWindow:
    """The fault-free observation: threshold alerts seen firing, or notified."""

    threshold_alerts: frozenset[str]
    started: float
    ended: float
    firing: list[dict[str, str]]
    notified: list[ReceivedAlert]


def threshold_alert_names(stack: Stack) -> frozenset[str]:
    """Names of the rendered threshold alerts (the ``loadsvc-thresholds`` group)."""
    doc = yaml.safe_load((stack.rendered / ALERT_RULES).read_text())
    [group] = [g for g in doc["groups"] if g["name"] == "loadsvc-thresholds"]
    return frozenset(r["alert"] for r in group["rules"])


@pytest.fixture(scope="module")
def healthy_window(stack: Stack) -> HealthyWindow:
    """Watch the fault-free run for HEALTHY_SPAN_S from the first scrape; stop at a first alert."""
    names = threshold_alert_names(stack)
    prom = stack.prometheus
    end = stack.started_at + scaled(HEALTHY_SPAN_S)

    def seen() -> tuple[list[dict[str, str]], list[ReceivedAlert]]:
        firing = [a for a in prom.firing() if a["alertname"] in names]
        notified = [a for a in stack.webhook.alerts() if a.labels.get("alertname") in names]
        return firing, notified

    firing, notified = seen()
    while time.time() < end and not (firing or notified):
        time.sleep(1)  # the evaluation interval: the span, not a condition, is waited for
        firing, notified = seen()
    # Every evaluation of the span, not only the ones sampled above.
    span = f"{math.ceil(time.time() - stack.started_at)}s"
    for r in prom.query(f'max_over_time(ALERTS{{alertstate="firing"}}[{span}])'):
        if r["metric"]["alertname"] in names and r["metric"] not in firing:
            firing.append(r["metric"])
    return HealthyWindow(names, stack.started_at, time.time(), firing, notified)


def _no_critical_on(stack: Stack, case: FaultCase) -> bool:
    """No critical alert of the case's scenario and endpoint fires (it would mute the warning)."""
    return not stack.prometheus.firing(
        severity="critical", scenario=case.scenario, endpoint=case.endpoint
    )


def _inject_until_firing(stack: Stack, case: FaultCase) -> FaultRun:
    """Turn the fault on, wait for its alert to fire in Prometheus, turn it (only it) off."""
    wait_for(lambda: _no_critical_on(stack, case), 60, f"{case.name}: no critical alert left")
    run = FaultRun(case, on=time.time())
    stack.set_faults(case.faults)
    try:
        wait_for(
            lambda: stack.prometheus.firing(**case.labels),
            45,
            f"{case.alertname} firing in Prometheus after {case.faults}",
        )
    except AssertionError as exc:
        run.error = str(exc)
    finally:
        stack.set_faults(case.removal)
        run.off = time.time()
    return run


def _inject_lane(stack: Stack, cases: list[FaultCase]) -> list[FaultRun]:
    """The faults of one scenario, one after the other."""
    return [_inject_until_firing(stack, case) for case in cases]


def _collect_notifications(stack: Stack, run: FaultRun) -> None:
    """Wait for the alert's firing notification, then for the same alert resolved."""
    case, hook = run.case, stack.webhook
    try:
        firing = wait_for(
            lambda: hook.find("firing", run.on, **case.labels),
            30,
            f"{case.alertname} firing at the webhook",
        )
        run.firing = firing
        # The same alert (fingerprint) resolved. When the warning was notified first
        # and the critical then muted it, this still arrives: the critical's condition
        # contains the warning's, so both resolve in the same evaluation and no
        # firing critical mutes the warning's resolved notification.
        run.resolved = wait_for(
            lambda: hook.find("resolved", run.off, firing.fingerprint, **case.labels),
            60,
            f"{case.alertname} resolved at the webhook",
        )
    except AssertionError as exc:
        received = [
            (a.status, a.labels.get("alertname"), a.labels.get("severity"))
            for a in hook.alerts()
            if a.received_at >= run.on and a.labels.get("scenario") == case.scenario
        ]
        run.error = f"{exc}\nreceived for {case.scenario} since the fault: {received}"


@pytest.fixture(scope="module")
def fault_runs(stack: Stack, healthy_window: HealthyWindow) -> dict[str, FaultRun]:
    """The three faults, in sequence per scenario, then every firing and resolved notification collected."""
    lanes: dict[str, list[FaultCase]] = {}
    for case in CASES:
        lanes.setdefault(case.scenario, []).append(case)
    try:
        with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            done = list(pool.map(lambda lane: _inject_lane(stack, lane), lanes.values()))
    finally:
        stack.clear_faults()  # whatever happened in a lane, the later tests start fault-free
    by_name = {run.case.name: run for lane in done for run in lane}
    runs = {case.name: by_name[case.name] for case in CASES}
    for run in runs.values():
        if run.error is None:
            _collect_notifications(stack, run)
    return runs


@pytest.fixture(scope="module")
def reconnects(stack: Stack, fault_runs: dict[str, FaultRun]) -> int:
    """Drop 10 % of the WS connections once, so the connect and reconnect panels have data.

    The 20 connections open before Prometheus first scrapes the service, and a
    rate needs samples on both sides of an increase: without this the connect and
    reconnect quantiles would be NaN for the whole run. Two dropped connections
    are 0.25 % of a 20 s window's WS traffic, well under every alert's limit.
    """
    answer = stack.set_faults({"drop_connections": {MARKET: 0.1}})
    dropped = int(answer["dropped"][MARKET])
    assert dropped >= 1, answer
    wait_for(
        lambda: stack.prometheus.query(
            "histogram_quantile(0.5, sum by (le) (rate(loadsvc_ws_reconnect_duration_seconds_bucket"
            '{scenario="market_stream"}[1m]))) >= 0'
        ),
        30,
        "a reconnect time in Prometheus",
    )
    return dropped


# -- 1. a healthy run is silent -----------------------------------------------------------


def test_healthy_run_raises_no_threshold_alert(stack: Stack, healthy_window: HealthyWindow) -> None:
    """Over 2 x (window + for) of a fault-free run no threshold alert fires or is notified."""
    w = healthy_window
    assert w.threshold_alerts >= {
        "LoadsvcRestLatencyHigh",
        "LoadsvcWsDeliveryLatencyHigh",
        "LoadsvcErrorRatioHigh",
        "LoadsvcErrorBudgetBurn",
    }
    assert w.firing == [], f"fired during the healthy run: {w.firing}\n{stack.logs()}"
    assert w.notified == [], f"notified during the healthy run: {w.notified}"
    assert w.ended - w.started >= HEALTHY_SPAN_S


def test_healthy_run_is_silent_because_it_is_healthy(
    stack: Stack, healthy_window: HealthyWindow
) -> None:
    """The silence is measured: every rule evaluates fine and the recorded quantiles and ratios are under their limits."""
    prom = stack.prometheus
    bad = [
        (r["group"], r.get("name"), r.get("lastError")) for r in prom.rules() if r["health"] != "ok"
    ]
    assert bad == []
    window = PROFILE.rate_window_s
    checks: dict[str, float] = {}
    for scenario in stack.config.scenarios:
        if scenario.name not in SCENARIOS:
            continue
        for ref in scenario.endpoints():
            t = scenario.thresholds.for_endpoint(ref.endpoint)
            latency = t.http_latency if ref.kind == "http" else t.ws_delivery_latency
            histogram = HTTP_LATENCY if ref.kind == "http" else WS_LATENCY
            where = f'scenario="{scenario.name}", endpoint="{ref.endpoint}"'
            q = f'quantile="{number(latency.quantile)}"'
            checks[f"{quantile_record(histogram, window)}{{{where}, {q}}}"] = latency.max_s
            checks[f"{error_ratio_record(window)}{{{where}}}"] = t.error_ratio
    assert len(checks) == 4
    at = min(healthy_window.ended, stack.started_at + HEALTHY_SPAN_S)
    for expr, limit in checks.items():
        result = prom.query(expr, at=at)
        assert len(result) == 1, (expr, result)
        assert float(result[0]["value"][1]) < limit, (expr, result)


# -- 2, 3. each fault brings its alert, and its removal the resolved notification -----------


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_fault_fires_alert_with_labels_and_measured_value(
    stack: Stack, fault_runs: dict[str, FaultRun], name: str
) -> None:
    """The fault's alert reaches the webhook with alertname, severity, scenario, endpoint and the measured value."""
    run = fault_runs[name]
    assert run.error is None, f"{run.error}\n{stack.logs()}"
    assert run.firing is not None
    labels = run.firing.labels
    assert run.firing.matches(run.case.labels)
    assert labels["severity"] in ("warning", "critical"), labels
    description = run.firing.annotations["description"]
    value = run.case.measured(description)
    assert value >= run.case.measured_at_least, description
    assert run.firing.annotations["runbook_url"].endswith(f"#{run.case.alertname.lower()}")


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_removing_the_fault_resolves_the_alert(
    stack: Stack, fault_runs: dict[str, FaultRun], name: str
) -> None:
    """After the fault is removed the webhook gets the same alert with status resolved."""
    run = fault_runs[name]
    assert run.error is None, f"{run.error}\n{stack.logs()}"
    assert run.firing is not None and run.resolved is not None
    assert run.resolved.fingerprint == run.firing.fingerprint
    assert run.resolved.labels == run.firing.labels
    assert run.resolved.group_status == "resolved"
    assert run.resolved.received_at > run.off


# -- 4. every dashboard query returns data ----------------------------------------------------

# "Returns data" means what Grafana would draw: the query, run as a range query
# over the whole test run with the panel's variables filled in, yields at least
# one series with at least one finite point. "No data" is no finite point.

# Drill-down panels that read one protocol's metrics only.
REST_PANELS = frozenset({"REST requests/s by outcome", "REST latency"})
WS_PANELS = frozenset(
    {
        "WS messages/s by outcome",
        "WS delivery latency",
        "Open connections",
        "Connect time",
        "Reconnect time",
        "Connection errors/s by reason",
        "Missed messages/s",
        "Message interval",
        "Delivery rate per connection",
        "Missed share of expected frames",
        "Stalls",
    }
)
# Queries of running scenarios that legitimately have no data here, and why.
NO_DATA_HERE = {
    "Next run": "continuous scenarios have no next run (the gauge is 0, which the query drops)",
}


def _scenario_of(expr: str) -> str | None:
    m = re.search(r'scenario="([^"]+)"', expr)
    return m.group(1) if m else None


def no_data_reason(q: DashboardQuery, expr: str, config: Config) -> str | None:
    """Why ``expr`` (``q`` instantiated) has no data in this setup; None when it must have data."""
    scenario = _scenario_of(expr)
    if scenario is None:
        return None  # fleet-wide panels: replicas, alerts, event loop
    spec = next(s for s in config.scenarios if s.name == scenario)
    kinds = {ref.kind for ref in spec.endpoints()}
    if q.where in REST_PANELS and "http" not in kinds:
        return f"{scenario} has no REST endpoint"
    if q.where in WS_PANELS and "ws" not in kinds:
        return f"{scenario} has no WS endpoint"
    # A panel that shows both protocols (e.g. "now vs baseline") has one query per protocol.
    if "loadsvc_http_" in expr and "http" not in kinds:
        return f"{scenario} has no REST endpoint"
    if "loadsvc_ws_" in expr and "ws" not in kinds:
        return f"{scenario} has no WS endpoint"
    if THRESHOLD_LIMIT_RECORD in expr or expr.rstrip().endswith("or vector(0)"):
        return None  # recorded from the configuration, or a constant fallback
    if scenario not in SCENARIOS:
        return (
            f"{scenario} ({spec.schedule.kind} schedule) is in the rendered default "
            "configuration but not run by the test's service"
        )
    return NO_DATA_HERE.get(q.where)


def all_queries(stack: Stack) -> list[tuple[DashboardQuery, str]]:
    """Every dashboard query, instantiated: the overview once, the drill-down per scenario."""
    out: list[tuple[DashboardQuery, str]] = []
    for rel in (OVERVIEW_DASHBOARD, SCENARIO_DASHBOARD):
        board = json.loads((stack.rendered / rel).read_text())
        variables = [v["name"] for v in board.get("templating", {}).get("list", [])]
        for q in dashboard_queries(board):
            if "scenario" in variables:
                out += [
                    (q, instantiate(q.expr, {"scenario": s.name})) for s in stack.config.scenarios
                ]
            else:
                out.append((q, instantiate(q.expr, {})))
    return out


def _finite_points(result: list[dict[str, Any]], labels: Mapping[str, str] = {}) -> list[float]:
    points = []
    for series in result:
        if all(series["metric"].get(k) == v for k, v in labels.items()):
            points += [float(v) for _, v in series["values"] if math.isfinite(float(v))]
    return points


def test_every_dashboard_query_returns_data_after_the_runs(
    stack: Stack, fault_runs: dict[str, FaultRun], reconnects: int
) -> None:
    """Each panel and annotation query has data over the run, except the listed no-data cases, which have none."""
    prom = stack.prometheus
    end = time.time()
    # Steps counted back from now, so the newest point is evaluated at `end` itself.
    step = 2.0
    start = end - step * math.floor((end - stack.started_at) / step)
    missing, unexpected, checked = [], [], 0
    for q, expr in all_queries(stack):
        reason = no_data_reason(q, expr, stack.config)
        points = _finite_points(prom.query_range(expr, start, end, step))
        checked += 1
        if reason is None and not points:
            missing.append(f"{q.dashboard} / {q.where}: {expr}")
        elif reason is not None and points:
            unexpected.append(f"{q.dashboard} / {q.where}: {expr} (expected none: {reason})")
    assert checked > 100
    assert missing == [], "no data:\n" + "\n".join(missing)
    assert unexpected == [], "data where none was expected:\n" + "\n".join(unexpected)


@dataclass(frozen=True)
class FailurePanel:
    """A panel query that must show a fault while it is on (read from the series with ``labels``)."""

    case: str
    dashboard: str
    where: str  # panel title prefix
    expr_contains: str
    labels: Mapping[str, str]
    at_least: float | None = None
    at_most: float | None = None


_REST_P = quantile_record(HTTP_LATENCY, PROFILE.rate_window_s)
_WS_P = quantile_record(WS_LATENCY, PROFILE.rate_window_s)
_RATIO = error_ratio_record(PROFILE.rate_window_s)
OVERVIEW, DRILL = "loadsvc-overview", "loadsvc-scenario"
FAILURE_PANELS = (
    FailurePanel("rest_latency", OVERVIEW, f"{FOREIGN} REST latency", 'quantile="0.95"', {}, 0.25),
    FailurePanel("rest_latency", DRILL, "REST latency", _REST_P, {"quantile": "0.95"}, 0.25),
    FailurePanel(
        "rest_latency",
        DRILL,
        "Last verdict: measured value",
        "",
        {"threshold": "http_latency"},
        0.25,
    ),
    FailurePanel(
        "rest_latency", DRILL, "Thresholds breached", "", {"threshold": "http_latency"}, 1
    ),
    FailurePanel(
        "ws_delay", OVERVIEW, f"{MARKET} WS delivery latency", 'quantile="0.99"', {}, 0.15
    ),
    FailurePanel("ws_delay", DRILL, "WS delivery latency", _WS_P, {"quantile": "0.99"}, 0.15),
    FailurePanel(
        "ws_delay",
        DRILL,
        "Last verdict: measured value",
        "",
        {"threshold": "ws_delivery_latency"},
        0.15,
    ),
    FailurePanel(
        "ws_delay", DRILL, "Thresholds breached", "", {"threshold": "ws_delivery_latency"}, 1
    ),
    FailurePanel("error_ratio", OVERVIEW, f"{FOREIGN} error ratio", "", {}, 0.1),
    FailurePanel("error_ratio", DRILL, "Error ratio", _RATIO, {"endpoint": FOREIGN}, 0.1),
    FailurePanel(
        "error_ratio", DRILL, "REST requests/s by outcome", "", {"outcome": "http_error"}, 1
    ),
    FailurePanel("error_ratio", DRILL, "Thresholds breached", "", {"threshold": "error_ratio"}, 1),
    FailurePanel("error_ratio", DRILL, "Last verdict", "last_run_passed", {}, at_most=0),
    FailurePanel("error_ratio", DRILL, "annotation: Runs failed", "", {}, 0.5),
    FailurePanel("error_ratio", OVERVIEW, "Firing loadsvc alerts", "", {}, 1),
)


@pytest.mark.parametrize(
    "panel", FAILURE_PANELS, ids=lambda p: f"{p.case}-{p.dashboard}-{p.where}-{p.expr_contains}"
)
def test_failure_panels_show_the_fault(
    stack: Stack, fault_runs: dict[str, FaultRun], panel: FailurePanel
) -> None:
    """While a fault is on (and one verdict window after) the panels that watch it show it."""
    run = fault_runs[panel.case]
    case = run.case
    start, end = run.on, min(time.time(), run.off + PROFILE.rate_window_s + 10)
    queries = [
        expr
        for q, expr in all_queries(stack)
        if q.dashboard == panel.dashboard
        and q.where.startswith(panel.where)
        and panel.expr_contains in expr
        and _scenario_of(expr) in (None, case.scenario)
    ]
    assert queries, f"no query of {panel} for {case.scenario}"
    labels = {**panel.labels}
    if panel.dashboard == DRILL and "endpoint" not in labels and "threshold" in labels:
        labels["endpoint"] = case.endpoint
    for expr in queries:
        points = _finite_points(stack.prometheus.query_range(expr, start, end, step=1), labels)
        assert points, f"no data for {expr} {labels} during {case.name}"
        if panel.at_least is not None:
            assert max(points) >= panel.at_least, (expr, labels, max(points))
        if panel.at_most is not None:
            assert min(points) <= panel.at_most, (expr, labels, min(points))
