"""The generated dashboards: structure Grafana needs, and limits equal to the configuration."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadsvc.config import parse_config
from loadsvc.config.spec import Config
from loadsvc.render import FAST
from loadsvc.render.files import (
    DASHBOARD_PROVIDER,
    DATASOURCE,
    OVERVIEW_DASHBOARD,
    SCENARIO_DASHBOARD,
)
from loadsvc.render.panels import DATASOURCE_UID
from loadsvc.render.promql import THRESHOLD_LIMIT_RECORD
from loadsvc.render.queries import dashboard_queries, instantiate
from loadsvc.render.recording import recording_rules

DASHBOARDS = (OVERVIEW_DASHBOARD, SCENARIO_DASHBOARD)


def _load(repo: Path, rel: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((repo / rel).read_text())
    return data


@pytest.mark.parametrize("rel", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_queries_the_provisioned_datasource(repo: Path, rel: Path) -> None:
    """Every panel, target and annotation names datasource uid loadsvc-prometheus."""
    board = _load(repo, rel)
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
    for item in board["annotations"]["list"]:
        assert item["datasource"]["uid"] == DATASOURCE_UID
    for variable in board.get("templating", {}).get("list", []):
        assert variable["datasource"]["uid"] == DATASOURCE_UID


@pytest.mark.parametrize("rel", DASHBOARDS, ids=lambda p: p.stem)
def test_panels_have_queries_unique_ids_and_fit_the_grid(repo: Path, rel: Path) -> None:
    """Non-row panels have targets with an expr and unique refIds; ids are unique; x + w <= 24."""
    board = _load(repo, rel)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert board["uid"] and board["title"]
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        targets = panel["targets"]
        assert targets and all(t["expr"].strip() for t in targets), panel["title"]
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), panel["title"]


def test_overview_threshold_steps_equal_the_configured_limits(repo: Path, config: Config) -> None:
    """Each endpoint's latency and error-ratio panel in the overview steps to red at its limit."""
    board = _load(repo, OVERVIEW_DASHBOARD)
    rows: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for panel in board["panels"]:
        if panel["type"] == "row":
            current = panel["title"].split(" ")[0]
            rows[current] = []
        else:
            rows[current].append(panel)
    checked = 0
    for scenario in config.scenarios:
        panels = rows[scenario.name]
        for ref in scenario.endpoints():
            t = scenario.thresholds.for_endpoint(ref.endpoint)
            latency = t.http_latency if ref.kind == "http" else t.ws_delivery_latency
            kind = "REST latency" if ref.kind == "http" else "WS delivery latency"
            expected = {
                f"{ref.endpoint} {kind}": latency.max_s,
                f"{ref.endpoint} error ratio": t.error_ratio,
            }
            for title, limit in expected.items():
                [panel] = [p for p in panels if p["title"].startswith(title)]
                steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                assert [s["value"] for s in steps] == [None, limit], panel["title"]
                assert (
                    panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
                )
                assert all(f'scenario="{scenario.name}"' in q["expr"] for q in panel["targets"])
                checked += 1
    assert checked == 2 * sum(len(s.endpoints()) for s in config.scenarios)


def test_overview_shows_users_throughput_and_ws_health_per_scenario(
    repo: Path, config: Config
) -> None:
    """Each scenario row has its users panel; WS scenarios add connections, reconnects, misses."""
    queries = [q.expr for q in dashboard_queries(_load(repo, OVERVIEW_DASHBOARD))]
    for scenario in config.scenarios:
        s = f'{{scenario="{scenario.name}"}}'
        assert f"sum(loadsvc_scenario_target_users{s})" in queries
        has_ws = any(r.kind == "ws" for r in scenario.endpoints())
        assert (f"sum by (endpoint) (loadsvc_ws_connections{s})" in queries) == has_ws


def test_drill_down_is_driven_by_the_scenario_variable(repo: Path) -> None:
    """The drill-down has a scenario variable and every query filters on it (or is per replica)."""
    board = _load(repo, SCENARIO_DASHBOARD)
    [variable] = board["templating"]["list"]
    assert variable["name"] == "scenario" and variable["type"] == "query"
    for q in dashboard_queries(board):
        assert 'scenario="$scenario"' in q.expr or "by (instance" in q.expr, q


def test_dashboards_say_how_they_were_made(repo: Path) -> None:
    """Each dashboard's description says it is generated and how to regenerate it."""
    for rel in DASHBOARDS:
        description = _load(repo, rel)["description"]
        assert "Generated by loadsvc.render" in description and "loadsvc render" in description


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards(repo: Path) -> None:
    """The datasource has uid loadsvc-prometheus at prometheus:9090; the provider reads the JSON dir."""
    ds = yaml.safe_load((repo / DATASOURCE).read_text())["datasources"][0]
    assert (ds["uid"], ds["type"], ds["url"]) == (
        DATASOURCE_UID,
        "prometheus",
        "http://prometheus:9090",
    )
    provider = yaml.safe_load((repo / DASHBOARD_PROVIDER).read_text())["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_instantiate_replaces_grafana_variables() -> None:
    """Grafana variables become concrete values; an unknown variable is an error, not a silent gap."""
    expr = 'rate(x{scenario="$scenario"}[$__rate_interval]) and y[${__range}]'
    assert instantiate(expr, {"scenario": "s"}) == 'rate(x{scenario="s"}[1m]) and y[1h]'
    with pytest.raises(KeyError):
        instantiate('x{a="$nope"}', {})


STREAM_CONFIG = """\
version: 1
defaults:
  thresholds:
    ws_delivery_rate: 1
    ws_missed_ratio: 0.2
    ws_stall: {after: 5s, max: 0}
    ws_reconnect_time: {quantile: 0.95, max: 1s}
scenarios:
  s:
    shape: {kind: constant, users: 2, duration: 10s}
    users:
      - {kind: ws_stream, path: /ws/a}
      - kind: ws_stream
        path: /ws/b
        message: {sequence_field: null}
    thresholds:
      endpoints:
        /ws/a: {ws_delivery_rate: 0.5, ws_connect_time: {quantile: 0.9, max: 2.5s}}
        /ws/b: {ws_stall: {after: 0}}
"""


def _limits(config: Config) -> dict[tuple[str, str], tuple[float, str | None]]:
    """The recorded limits: (endpoint, threshold) -> (value, quantile label)."""
    groups = recording_rules(config, FAST)["groups"]
    [group] = [g for g in groups if g["name"] == "loadsvc-threshold-limits"]
    out = {}
    for rule in group["rules"]:  # type: ignore[attr-defined]
        labels = rule["labels"]
        value = float(rule["expr"].removeprefix("vector(").removesuffix(")"))
        out[(labels["endpoint"], labels["threshold"])] = (value, labels.get("quantile"))
    return out


def test_recorded_limits_are_the_stream_judgements_each_endpoint_is_judged_by() -> None:
    """Per endpoint, the limit series the panels draw are exactly the stream judgements on there:
    an endpoint's own floor, no missed share without a sequence, no stall line with the watch
    off, a connect time set for one endpoint only, with its quantile."""
    config = parse_config(STREAM_CONFIG, "stream.yaml")
    limits = _limits(config)
    assert {
        k: v for k, v in limits.items() if k[1].startswith("ws_") and "latency" not in k[1]
    } == {
        ("/ws/a", "ws_delivery_rate"): (0.5, None),
        ("/ws/a", "ws_missed_ratio"): (0.2, None),
        ("/ws/a", "ws_stalled"): (0.0, None),
        ("/ws/a", "ws_connect_time"): (2.5, "0.9"),
        ("/ws/a", "ws_reconnect_time"): (1.0, "0.95"),
        ("/ws/b", "ws_delivery_rate"): (1.0, None),
        ("/ws/b", "ws_reconnect_time"): (1.0, "0.95"),
    }
    # The same judgements the verdict makes (its names, its limits).
    judged = {
        (r.endpoint, name): limit
        for r in config.scenario("s").endpoints()
        for name, limit in config.scenario("s")
        .thresholds.for_endpoint(r.endpoint)
        .stream_limits()
        .items()
        if name != "ws_missed_ratio" or r.endpoint == "/ws/a"
    }
    assert {k: v[0] for k, v in limits.items() if k in judged} == judged


def test_drill_down_draws_a_limit_on_every_stream_panel(repo: Path) -> None:
    """Delivery rate, missed share, stalls, connect and reconnect time each carry the recorded
    limit of their own threshold as a dashed red series."""
    board = _load(repo, SCENARIO_DASHBOARD)
    panels = {p["title"]: p for p in board["panels"]}
    for title, threshold in {
        "Delivery rate per connection": "ws_delivery_rate",
        "Missed share of expected frames": "ws_missed_ratio",
        "Stalls": "ws_stalled",
        "Connect time": "ws_connect_time",
        "Reconnect time": "ws_reconnect_time",
    }.items():
        panel = panels[title]
        [limit] = [t for t in panel["targets"] if THRESHOLD_LIMIT_RECORD in t["expr"]]
        assert f'threshold="{threshold}"' in limit["expr"] and "limit" in limit["legendFormat"]
        [override] = panel["fieldConfig"]["overrides"]
        assert override["matcher"]["options"] == ".*limit.*"
        assert {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}} in override[
            "properties"
        ]


def test_overview_ws_panels_step_at_the_floor_and_the_reconnect_limit(
    repo: Path, config: Config
) -> None:
    """Each WS scenario's messages-per-connection panel steps at its ws_delivery_rate floor and
    its reconnect panel at its ws_reconnect_time limit."""
    board = _load(repo, OVERVIEW_DASHBOARD)
    checked = 0
    for panel in board["panels"]:
        if panel["title"] not in ("WS messages/s per connection", "WS reconnect time"):
            continue
        [name] = {m for t in panel["targets"] for m in re.findall(r'scenario="([^"]+)"', t["expr"])}
        t = config.scenario(name).thresholds.default
        limit = t.ws_delivery_rate if panel["title"].startswith("WS messages") else 0.0
        if panel["title"] == "WS reconnect time":
            assert t.ws_reconnect_time is not None
            limit = t.ws_reconnect_time.max_s
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [s["value"] for s in steps] == [None, limit], (name, panel["title"])
        checked += 1
    assert checked == 2 * 3  # three WS scenarios
