"""``loadsvc demo``: the small profile runs healthy beside the target on this machine.

The cheap proof in the default suite runs the demo for a few live windows of 10 s. The
2-minute proof the issue asks for is ``LOADSVC_LONG_TESTS=1`` (kept out of the default
suite: it alone would take two minutes of the suite's budget).
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from loadsvc.localstack import free_port
from tests.support.http import get_json
from tests.support.processes import Proc
from tests.support.timing import scaled, wait_for

CONTINUOUS = ("market_stream", "foreign_flow")


def _live_results(url: str) -> dict[str, Any]:
    status = get_json(url + "/api/status")
    return {s["name"]: s["live"] for s in status["scenarios"] if s["name"] in CONTINUOUS}


def _watch_demo(seconds: float, window: str) -> list[str]:
    """Run the demo with a live ``window``, and for ``seconds`` after both continuous scenarios
    are judged, every live result that was not PASSED (with its headline)."""
    ports = [free_port() for _ in range(4)]
    demo = Proc(
        [
            "demo", "--target-port", str(ports[0]), "--port", str(ports[1]),
            "--prometheus-port", str(ports[2]), "--alertmanager-port", str(ports[3]),
        ],
        env={"LOADSVC_LIVE_WINDOW": window, "LOADSVC_API_TOKEN": ""},
    )  # fmt: skip
    url = f"http://127.0.0.1:{ports[1]}"
    try:
        wait_for(lambda: "loadsvc demo is running" in demo.output(), 60, "demo running")
        assert "examples/demo.yaml" in demo.output()

        def judged() -> bool:
            live = _live_results(url)
            return all(v is not None and v["result"] != "starting" for v in live.values())

        wait_for(judged, 60, "both continuous scenarios judged live")
        bad: list[str] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for name, live in _live_results(url).items():
                if live is None or live["result"] != "passed":
                    bad.append(f"{name}: {live and live['headline']}")
            time.sleep(2)  # a look every 2 s, as the page does (the deadline bounds the loop)
        return bad
    finally:
        demo.stop()


def test_the_demo_profile_stays_healthy_for_a_few_live_windows() -> None:
    """The demo's profile (tens of users) on this machine: every live judgement of its
    continuous scenarios passes for 20 s (two 10 s live windows)."""
    assert _watch_demo(scaled(20), "10s") == []


@pytest.mark.skipif(
    not os.environ.get("LOADSVC_LONG_TESTS"), reason="2 minutes: set LOADSVC_LONG_TESTS=1"
)
def test_the_demo_profile_stays_healthy_for_two_minutes() -> None:
    """The issue's proof: two minutes of the demo (the page's 60 s live window) with every
    live judgement PASSED."""
    assert _watch_demo(120, "60s") == []
