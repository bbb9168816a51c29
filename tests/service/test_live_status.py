"""/api/status's live judgement of a real `serve` against the reference target: a WS stream that
stops publishing is no data within the live window, and recovers when it publishes again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.http import get_json, get_text, set_faults
from tests.support.processes import start_serve, start_target
from tests.support.timing import wait_for

CONFIG = """\
version: 1
scenarios:
  stream:
    description: 3 WS clients on /ws/market
    schedule: {kind: continuous, verdict_every: 10m}
    shape: {kind: constant, users: 3, duration: 1h}
    users:
      - {kind: ws_stream, path: /ws/market}
"""


def _live(url: str) -> dict[str, Any] | None:
    (scenario,) = get_json(url + "/api/status")["scenarios"]
    live: dict[str, Any] | None = scenario["live"]
    return live


def test_a_stalled_stream_is_no_data_live_then_recovers(tmp_path: Path) -> None:
    """Publishing stalled: within the 3 s window the live result fails with ws_delivery_latency
    no data (its metric 1); publishing again: PASSED (metric 0)."""
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    target, port = start_target()
    serve = None
    try:
        target_url = f"http://127.0.0.1:{port}"
        serve, url = start_serve(
            ["--config", str(config), "--target", target_url],
            env={"LOADSVC_LIVE_WINDOW": "3s", "LOADSVC_HISTORY_FILE": str(tmp_path / "h.jsonl")},
        )

        def result_is(want: str) -> dict[str, Any] | None:
            live = _live(url)
            return live if live is not None and live["result"] == want else None

        wait_for(lambda: result_is("passed"), 30, "live passed")
        set_faults(target_url, {"stall": ["/ws/market"]})
        stalled = wait_for(lambda: result_is("failed"), 30, "live failed on the stall")
        metrics = get_text(url + "/metrics")
        set_faults(target_url, None)
        wait_for(lambda: result_is("passed"), 30, "live passed again")
        after = get_text(url + "/metrics")
    finally:
        if serve is not None:
            serve.stop()
        target.stop()
    (latency,) = [t for t in stalled["thresholds"] if t["name"] == "ws_delivery_latency"]
    assert latency["state"] == "no_data" and latency["since"] is not None
    assert "/ws/market ws_delivery_latency p99: no data (0 of min 1 samples)" in stalled["headline"]
    series = 'loadsvc_live_threshold_breached{endpoint="/ws/market",scenario="stream",threshold="ws_delivery_latency"}'
    assert f"{series} 1.0" in metrics and f"{series} 0.0" in after
