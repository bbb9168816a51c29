"""Real Alertmanager 0.25 with the committed config: the inhibition rules mute what they should."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DEADLINE_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _request(url: str, body: object | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@pytest.fixture
def alertmanager(tmp_path: Path, repo: Path) -> Iterator[str]:
    """prometheus-alertmanager on 127.0.0.1 with alertmanager/alertmanager.yml, no cluster."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("Alertmanager is not installed (Debian: prometheus-alertmanager)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={repo / 'alertmanager/alertmanager.yml'}",
            f"--storage.path={tmp_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError("alertmanager did not become ready") from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
