"""Real Prometheus loads the rendered rules and evaluates every dashboard query.

Prometheus scrapes a real exposition of the metric contract (prometheus_client
on 127.0.0.1 port 0, fresh registry), so names and labels are the exporter's,
not a copy. This is also the starting point of the end-to-end test against the
running service: point the scrape at loadsvc instead.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import MetricsHandler

from loadsvc.config.spec import Config
from loadsvc.metrics import create_metrics
from loadsvc.render import FAST, rendered_files
from loadsvc.render.files import OVERVIEW_DASHBOARD, SCENARIO_DASHBOARD
from loadsvc.render.queries import dashboard_queries, instantiate
from tests.support import get_json, wait_for
from tests.support.stack import prometheus as running_prometheus

DEADLINE_S = 20.0


@pytest.fixture
def exporter(config: Config) -> Iterator[str]:
    """A metrics endpoint serving the contract with a little traffic on every scenario."""
    registry = CollectorRegistry()
    m = create_metrics(registry, config.latency_boundaries())
    for s in config.scenarios:
        m.scenario_running.labels(s.name).set(1)
        m.scenario_users.labels(s.name).set(10)
        m.scenario_target_users.labels(s.name).set(10)
        m.scenario_runs.labels(s.name, "passed").inc()
        m.scenario_last_run_passed.labels(s.name).set(1)
        m.scenario_last_run_timestamp.labels(s.name).set(time.time())
        for ref in s.endpoints():
            if ref.kind == "http":
                m.http_requests.labels(s.name, ref.endpoint, ref.method, "ok").inc(10)
                m.http_request_duration.labels(s.name, ref.endpoint, ref.method).observe(0.05)
            else:
                m.ws_messages.labels(s.name, ref.endpoint, "ok").inc(10)
                m.ws_message_latency.labels(s.name, ref.endpoint).observe(0.02)
                m.ws_connections.labels(s.name, ref.endpoint).set(5)
                m.ws_connect_duration.labels(s.name, ref.endpoint).observe(0.01)
    # The live judgement: the first scenario runs with its first latency threshold breached;
    # the last one has stopped, its live gauges back at 0 (as the recorder leaves them).
    first, last = config.scenarios[0], config.scenarios[-1]
    ref = first.endpoints()[0]
    latency = "http_latency" if ref.kind == "http" else "ws_delivery_latency"
    m.live_threshold_breached.labels(first.name, ref.endpoint, latency).set(1)
    m.live_threshold_value.labels(first.name, ref.endpoint, latency).set(0.5)
    m.live_threshold_breached.labels(first.name, ref.endpoint, "error_ratio").set(0)
    m.scenario_running.labels(last.name).set(0)
    m.live_threshold_breached.labels(last.name, last.endpoints()[0].endpoint, "error_ratio").set(0)
    m.event_loop_lag.observe(0.001)
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def prometheus(tmp_path: Path, config: Config, exporter: str) -> Iterator[str]:
    """Real Prometheus with the fast-profile rules, scraping the exporter every second."""
    for rel, text in rendered_files(config, FAST).items():
        if "rules" in rel.parts:
            (tmp_path / rel.name).write_text(text)
    scrape = {"job_name": "loadsvc", "static_configs": [{"targets": [exporter]}]}
    prom_cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "loadsvc-*.yml")],
        "scrape_configs": [scrape],
    }
    with running_prometheus(prom_cfg, tmp_path) as proc:
        yield proc.url


def _query(url: str, expr: str) -> list[Any]:
    data = get_json(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert data["status"] == "success", (expr, data)
    result: list[Any] = data["data"]["result"]
    return result


def test_rules_load_and_dashboard_queries_evaluate(prometheus: str, config: Config) -> None:
    """All rule groups load healthy and every dashboard query (variables filled in) evaluates."""

    def rules_ran() -> bool:
        groups = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return bool(rules) and all(r.get("lastEvaluation", "").startswith("20") for r in rules)

    wait_for(rules_ran, DEADLINE_S, "every rule evaluated once")
    groups = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
    unhealthy = [r["name"] for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert unhealthy == []

    # The recorded limits exist as soon as the rules ran: the drill-down can draw them.
    limits = _query(prometheus, "scenario_endpoint:loadsvc_threshold_limit:config")
    assert {r["metric"]["scenario"] for r in limits} == {s.name for s in config.scenarios}

    wait_for(
        lambda: _query(prometheus, 'up{job="loadsvc"} == 1'), DEADLINE_S, "the exporter scraped"
    )
    files = rendered_files(config, FAST)
    scenario = config.scenarios[0].name
    for rel in (OVERVIEW_DASHBOARD, SCENARIO_DASHBOARD):
        for q in dashboard_queries(json.loads(files[rel])):
            _query(prometheus, instantiate(q.expr, {"scenario": scenario}))

    # A query that reads only scraped data returns series at once.
    users = f'sum(loadsvc_scenario_target_users{{scenario="{scenario}"}})'
    assert float(_query(prometheus, users)[0]["value"][1]) == 10


def _panel_queries(board: dict[str, Any], title: str) -> list[str]:
    [panel] = [p for p in board["panels"] if p.get("title") == title]
    return [t["expr"] for t in panel["targets"]]


def test_live_row_counts_breaches_of_a_running_scenario_only(
    prometheus: str, config: Config
) -> None:
    """The drill-down's "breached now" reads 1 for the running scenario with one live breach,
    and no data (not "0 breached") for a stopped one whose live gauges read 0."""
    board = json.loads(rendered_files(config, FAST)[SCENARIO_DASHBOARD])
    [expr] = _panel_queries(board, "Now: thresholds breached")
    first, last = config.scenarios[0].name, config.scenarios[-1].name
    running = wait_for(
        lambda: _query(prometheus, instantiate(expr, {"scenario": first})),
        DEADLINE_S,
        "the live breach scraped",
    )
    assert [float(r["value"][1]) for r in running] == [1.0]
    assert _query(prometheus, instantiate(expr, {"scenario": last})) == []


STREAM_PANELS = {
    "Delivery rate per connection": "ws_delivery_rate",
    "Missed share of expected frames": "ws_missed_ratio",
    "Stalls": "ws_stalled",
    "Connect time": "ws_connect_time",
    "Reconnect time": "ws_reconnect_time",
}


def test_stream_panels_draw_the_configured_limit_of_each_endpoint(
    prometheus: str, config: Config
) -> None:
    """Each WS stream panel's limit query returns, per endpoint, the limit the verdict judges by."""
    board = json.loads(rendered_files(config, FAST)[SCENARIO_DASHBOARD])
    wait_for(
        lambda: _query(prometheus, "scenario_endpoint:loadsvc_threshold_limit:config"),
        DEADLINE_S,
        "the limits recorded",
    )
    checked = 0
    for title, threshold in STREAM_PANELS.items():
        [expr] = [e for e in _panel_queries(board, title) if "loadsvc_threshold_limit" in e]
        for s in config.scenarios:
            expected = {
                r.endpoint: s.thresholds.for_endpoint(r.endpoint).stream_limits()[threshold]
                for r in s.endpoints()
                if r.kind == "ws"
            }
            found = _query(prometheus, instantiate(expr, {"scenario": s.name}))
            assert {r["metric"]["endpoint"]: float(r["value"][1]) for r in found} == expected
            checked += len(expected)
    assert checked >= 5 * 3  # three WS scenarios in the default configuration
