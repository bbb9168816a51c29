"""Real Alertmanager 0.25 with the committed config: the inhibition rules mute what they should."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import scaled
from tests.support.stack import alertmanager as running_alertmanager


def _request(url: str, body: object | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=scaled(5)) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@pytest.fixture
def alertmanager(tmp_path: Path, repo: Path) -> Iterator[str]:
    """prometheus-alertmanager on 127.0.0.1 with alertmanager/alertmanager.yml, no cluster."""
    with running_alertmanager(repo / "alertmanager/alertmanager.yml", tmp_path) as proc:
        yield proc.url


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": severity, **labels}, "annotations": {}}


def _states(url: str, alerts: list[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    _request(f"{url}/api/v2/alerts", alerts)
    got = _request(f"{url}/api/v2/alerts")
    return {
        (a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("endpoint", "")): a[
            "status"
        ]["state"]
        for a in got
    }


def test_critical_mutes_the_warning_of_the_same_scenario_and_endpoint(alertmanager: str) -> None:
    """A critical alert suppresses the warning on its endpoint, not the warning on another one."""
    ff = {"scenario": "foreign_flow", "endpoint": "/api/market/foreign-detail"}
    snap = {"scenario": "market_open_burst", "endpoint": "/api/market/snapshot"}
    states = _states(
        alertmanager,
        [
            _alert("LoadsvcRestLatencyHigh", "critical", **ff),
            _alert("LoadsvcRestLatencyHigh", "warning", **ff),
            _alert("LoadsvcErrorRatioHigh", "warning", **snap),
        ],
    )
    assert states == {
        ("LoadsvcRestLatencyHigh", "critical", ff["endpoint"]): "active",
        ("LoadsvcRestLatencyHigh", "warning", ff["endpoint"]): "suppressed",
        ("LoadsvcErrorRatioHigh", "warning", snap["endpoint"]): "active",
    }


def test_loadsvc_down_mutes_every_other_loadsvc_alert(alertmanager: str) -> None:
    """While LoadsvcDown fires, the other loadsvc alerts (critical ones too) are suppressed."""
    states = _states(
        alertmanager,
        [
            _alert("LoadsvcDown", "critical", job="loadsvc"),
            _alert("LoadsvcContinuousScenarioNotRunning", "critical", scenario="market_stream"),
            _alert("LoadsvcWsMessagesStopped", "critical", scenario="s", endpoint="/ws/market"),
        ],
    )
    assert states == {
        ("LoadsvcDown", "critical", ""): "active",
        ("LoadsvcContinuousScenarioNotRunning", "critical", ""): "suppressed",
        ("LoadsvcWsMessagesStopped", "critical", "/ws/market"): "suppressed",
    }


def test_a_busy_generator_mutes_no_threshold_alert(alertmanager: str) -> None:
    """While LoadsvcGeneratorBusy fires on the replica, every latency and failed-run alert
    is still sent: a breach beyond the lag is the backend's, and even one within it is said."""
    ws = {"scenario": "market_stream", "endpoint": "/ws/market"}
    rest = {"scenario": "foreign_flow", "endpoint": "/api/market/foreign-detail"}
    states = _states(
        alertmanager,
        [
            _alert("LoadsvcGeneratorBusy", "warning", instance="a:9100"),
            _alert("LoadsvcWsDeliveryLatencyHigh", "critical", **ws),
            _alert("LoadsvcRestLatencyHigh", "warning", **rest),
            _alert("LoadsvcScenarioRunFailed", "warning", scenario="foreign_flow"),
        ],
    )
    assert states == {
        ("LoadsvcGeneratorBusy", "warning", ""): "active",
        ("LoadsvcWsDeliveryLatencyHigh", "critical", ws["endpoint"]): "active",
        ("LoadsvcRestLatencyHigh", "warning", rest["endpoint"]): "active",
        ("LoadsvcScenarioRunFailed", "warning", ""): "active",
    }
