"""The one-shot commands exactly as the issue gives them, as real processes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    free_port,
    get_text,
    loadsvc,
    scaled,
    set_faults,
    start,
    stop,
    target_process,
    wait_for,
    wait_http,
)
from tests.support.stack import run_tool


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    """One reference target process for the module."""
    with target_process() as url:
        yield url


@pytest.fixture
def faults(target_url: str) -> Iterator[None]:
    """Faults set by a test are cleared after it."""
    yield
    set_faults(target_url, None)


def test_validate_accepts_the_default_and_the_example() -> None:
    """`loadsvc validate` exits 0 on the built-in configuration and on examples/seed.yaml."""
    assert loadsvc("validate").returncode == 0
    r = loadsvc("validate", "examples/seed.yaml")
    assert r.returncode == 0, r.stderr
    assert "4 scenarios" in r.stdout


def test_validate_names_every_bad_field_with_its_place(tmp_path: Path) -> None:
    """A bad file exits 2 and names each bad field with file, line and path."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\n"
        "scenarios:\n"
        "  foreign_flow:\n"
        "    shape: {kind: constant, users: 0, duration: 30s}\n"
        "    users:\n"
        "      - kind: rest\n"
        "        pacing: fast\n"
        "        tasks: [{path: api/no-slash}]\n"
    )
    r = loadsvc("validate", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert f"{bad}:4: scenarios.foreign_flow.shape.users:" in lines[0]
    assert any(f"{bad}:7: scenarios.foreign_flow.users[0].pacing:" in ln for ln in lines)
    assert any(f"{bad}:8: scenarios.foreign_flow.users[0].tasks[0].path:" in ln for ln in lines)


def test_run_with_a_bad_config_exits_2_before_anything_starts(
    tmp_path: Path, target_url: str
) -> None:
    """`loadsvc run --config BAD` exits 2 with the errors and runs nothing."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\nscenarios: {}\n")
    r = loadsvc("run", "foreign_flow", "--config", str(bad), "--target", target_url)
    assert r.returncode == 2
    assert "version" in r.stderr and "run started" not in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["run", "no_such_scenario", "--target", "http://127.0.0.1:9"],
            "no scenario 'no_such_scenario'",
        ),
        (["run", "foreign_flow", "--target", "http://127.0.0.1:9"], "unreachable"),
        (["run", "foreign_flow", "--target", "ftp://x"], "--target"),
        (["run", "foreign_flow", "--users", "0", "--target", "http://127.0.0.1:9"], "--users"),
        (
            ["run", "foreign_flow", "--duration", "soon", "--target", "http://127.0.0.1:9"],
            "--duration",
        ),
        (["run"], "scenario"),
        (["run", "foreign_flow", "--summary-json", "/nonexistent/dir/s.json"], "--summary-json"),
        (
            ["run", "foreign_flow", "--report-html", "/nonexistent/dir/r.html"],
            "--report-html: cannot write",
        ),
    ],
)
def test_run_rejects_bad_input_with_exit_2(args: list[str], needle: str) -> None:
    """Unknown scenario, unreachable target, bad flags: exit 2 and say which."""
    r = loadsvc(*args)
    assert r.returncode == 2
    assert needle in r.stderr


def run_small(
    scenario: str, target_url: str, tmp_path: Path, duration: str = "4s"
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`loadsvc run SCENARIO` with 5 users; its result and its summary JSON."""
    out = tmp_path / "summary.json"
    r = loadsvc(
        "run",
        scenario,
        "--target",
        target_url,
        "--users",
        "5",
        "--duration",
        duration,
        "--summary-json",
        str(out),
    )
    doc: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    return r, doc


def test_healthy_run_exits_0_and_writes_the_summary(tmp_path: Path, target_url: str) -> None:
    """foreign_flow with 5 users passes, exits 0, and its summary JSON has every field."""
    r, doc = run_small("foreign_flow", target_url, tmp_path, "4s")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "foreign_flow: PASSED" in r.stdout
    assert doc["scenario"] == "foreign_flow" and doc["passed"] is True
    (ep,) = doc["endpoints"]
    assert ep["endpoint"] == "/api/market/foreign-detail" and ep["kind"] == "http"
    assert ep["count"] >= 5 and ep["errors"] == 0 and ep["error_rate"] == 0
    assert 0 < ep["p50_ms"] <= ep["p95_ms"] <= ep["p99_ms"] < 200
    names = {(t["endpoint"], t["name"]) for t in doc["thresholds"]}
    assert names == {
        ("/api/market/foreign-detail", "http_latency"),
        ("/api/market/foreign-detail", "error_ratio"),
    }
    assert all(t["passed"] and {"limit", "value"} <= t.keys() for t in doc["thresholds"])


def test_rest_latency_fault_exits_1_naming_the_p95_threshold(
    tmp_path: Path, target_url: str, faults: None
) -> None:
    """+250 ms on foreign-detail: p95 reported at its true size, exit 1 naming the REST p95 threshold."""
    set_faults(target_url, {"latency_ms": {"/api/market/foreign-detail": 250}})
    r, doc = run_small("foreign_flow", target_url, tmp_path, "5s")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "! /api/market/foreign-detail http_latency p95" in r.stdout
    assert 250 <= doc["endpoints"][0]["p95_ms"] < 350
    (breach,) = [t for t in doc["thresholds"] if not t["passed"]]
    assert breach["name"] == "http_latency" and breach["limit"] == 200 and breach["value"] >= 250


def test_ws_delivery_delay_exits_1(tmp_path: Path, target_url: str, faults: None) -> None:
    """150 ms WS delivery delay: market_stream reports it and exits 1."""
    set_faults(target_url, {"ws_delay_ms": {"/ws/market": 150}})
    r, doc = run_small("market_stream", target_url, tmp_path, "4s")
    assert r.returncode == 1, r.stdout + r.stderr
    (ep,) = doc["endpoints"]
    assert ep["kind"] == "ws" and ep["p99_ms"] >= 150
    (breach,) = [t for t in doc["thresholds"] if not t["passed"]]
    assert breach["name"] == "ws_delivery_latency"


def test_metrics_port_serves_valid_metrics_during_a_run(target_url: str) -> None:
    """--metrics-port serves the contract while running, and promtool accepts it."""
    port = free_port()
    proc = start(
        [
            "run",
            "market_stream",
            "--target",
            target_url,
            "--users",
            "3",
            "--duration",
            "4s",
            "--metrics-port",
            str(port),
        ]
    )
    ok = 'loadsvc_ws_messages_total{endpoint="/ws/market",outcome="ok",scenario="market_stream"} '
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_http(metrics_url)

        def counted() -> str | None:
            text = get_text(metrics_url)
            return text if ok in text and ok + "0.0" not in text else None

        text = wait_for(counted, 5, "WS frames counted on /metrics")
        bucket = 'loadsvc_ws_message_latency_seconds_bucket{endpoint="/ws/market",le="%s"'
        # Both threshold boundaries are buckets, so the verdict and the alerts are exact.
        assert bucket % "0.1" in text and bucket % "0.2" in text
        run_tool(["promtool", "check", "metrics"], stdin=text)
    finally:
        try:
            code = proc.wait(scaled(30))
        except subprocess.TimeoutExpired:
            code = stop(proc)
    assert code == 0
