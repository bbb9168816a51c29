"""The seed's success criteria and its full sizes, against the real reference target."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support import scaled, start, target_process

SCENARIOS = ("market_stream", "foreign_flow", "market_open_burst", "reconnect_storm")


def _run_all(url: str, tmp_path: Path, runs: dict[str, list[str]]) -> dict[str, dict[str, object]]:
    """Run several `loadsvc run` processes at once; return each summary, asserting exit 0."""
    procs: dict[str, subprocess.Popen[str]] = {}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.json"
        procs[name] = start(["run", name, "--target", url, "--summary-json", str(out), *extra])
    docs = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=scaled(240))
        assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{stdout}\n{stderr[-3000:]}"
        docs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    return docs


def test_each_seed_scenario_runs_5_users_for_30s_without_errors(tmp_path: Path) -> None:
    """All four seed scenarios, 5 users for 30 s each, pass with no errors; streams get ~2 msg/s."""
    with target_process() as url:
        docs = _run_all(
            url, tmp_path, {s: ["--users", "5", "--duration", "30s"] for s in SCENARIOS}
        )
    for name, doc in docs.items():
        assert doc["passed"], name
        for ep in doc["endpoints"]:
            assert ep["errors"] == 0, (name, ep)
            assert ep["count"] > 0, (name, ep)
    (stream,) = docs["market_stream"]["endpoints"]
    assert 1.6 <= stream["messages_per_second_per_connection"] <= 2.2
    (storm,) = docs["reconnect_storm"]["endpoints"]
    assert storm["reconnect_p95_ms"] is not None
    # 5 users x 3 storms (0 s, 10 s, 20 s) after their first connect
    assert storm["connects"] >= 5 + 5 * 3
    burst = {ep["endpoint"] for ep in docs["market_open_burst"]["endpoints"]}
    assert burst == {
        "/ws/market",
        "/api/market/snapshot",
        "/api/market/foreign-detail",
        "/api/market/alerts",
    }


def test_full_seed_sizes_run_without_the_generator_breaching(tmp_path: Path) -> None:
    """500 WS streams and 500 REST pollers together, on this machine, hold every threshold."""
    with target_process() as url:
        docs = _run_all(
            url,
            tmp_path,
            {"market_stream": ["--duration", "30s"], "foreign_flow": ["--duration", "30s"]},
        )
    (stream,) = docs["market_stream"]["endpoints"]
    (poll,) = docs["foreign_flow"]["endpoints"]
    assert stream["connects"] == 500 and stream["connection_errors"] == 0
    assert 1.6 <= stream["messages_per_second_per_connection"] <= 2.2
    # 500 users at one request per 2 s: ~250 req/s once spawned (5 s at 100 users/s)
    assert poll["per_second"] > 200
    for doc in docs.values():
        assert doc["result"] == "passed", doc["thresholds"]
