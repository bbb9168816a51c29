"""The generated dashboards: structure Grafana needs, and limits equal to the configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadsvc.config.spec import Config
from loadsvc.render.files import (
    DASHBOARD_PROVIDER,
    DATASOURCE,
    OVERVIEW_DASHBOARD,
    SCENARIO_DASHBOARD,
)
from loadsvc.render.panels import DATASOURCE_UID
from loadsvc.render.queries import dashboard_queries, instantiate

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
