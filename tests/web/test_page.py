"""The status page of ``loadsvc serve`` in a real browser: scenarios, live charts, no errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.configs import EVERY_KIND_USERS
from tests.support.http import get_json, http
from tests.support.processes import start_serve, start_target
from tests.web.chromium import CHROMIUM, chromium
from tests.web.test_report import SHOTS

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")

CONFIG = (
    """\
version: 1
scenarios:
  web_live:
    description: a WS stream, a reconnecting WS client and a REST poller, continuously
    schedule: {kind: continuous, verdict_every: 1m}
    shape: {kind: constant, users: 6, duration: 1m}
    users:
"""
    + EVERY_KIND_USERS
    + """\
  web_nightly:
    description: waits for its schedule
    schedule: {kind: interval, every: 1h}
    shape: {kind: constant, users: 1, duration: 10s}
    users:
      - kind: rest
        pacing: 1s
        tasks: [{path: /api/market/alerts}]
"""
)

POINTS = "window.loadsvc.charts().reduce((n, c) => n + c.points, 0)"


async def test_live_page_shows_scenarios_and_charts_that_grow_while_running(
    tmp_path: Path,
) -> None:
    """The page lists every scenario, draws every chart with its threshold, and updates unprompted."""
    config = tmp_path / "web.yaml"
    config.write_text(CONFIG)
    target, port = start_target()
    serve, url = None, ""
    try:
        args = ["--config", str(config), "--target", f"http://127.0.0.1:{port}"]
        serve, url = start_serve([*args, "--history-file", str(tmp_path / "runs.jsonl")])
        async with chromium() as browser:
            page = await browser.open(url + "/")
            await page.wait_for(
                "window.loadsvc.charts().length >= 8 && window.loadsvc.charts().every(c => c.points > 0)",
                20,
                "every chart drawn with data",
            )
            first = await page.evaluate(POINTS)
            updates = await page.evaluate("window.loadsvc.state.updates")
            # Both: a refresh draws the charts before it counts itself as an update.
            await page.wait_for(
                f"{POINTS} > {first} && window.loadsvc.state.updates > {updates}",
                10,
                "the charts grew in a later update",
            )
            names = await page.evaluate(
                "Array.from(document.querySelectorAll('#scenarios tbody tr td:first-child'))"
                ".map(td => td.textContent)"
            )
            heads = await page.evaluate(
                "Array.from(document.querySelectorAll('#scenarios thead th'))"
                ".map(th => th.textContent)"
            )
            charts = await page.evaluate("window.loadsvc.charts()")
            chosen = await page.evaluate("document.querySelector('#chosen').textContent")
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(SHOTS / "status-page.png")
            assert page.errors == []
        assert names == ["web_live", "web_nightly"]
        assert heads[-2:] == ["last verdict", "vs baseline"]
        latency = [c for c in charts if c["title"].startswith("Latency")]
        assert len(latency) == 3 and all(c["thresholdPoints"] > 0 for c in latency)
        assert chosen == "web_live"
    finally:
        if serve is not None:
            serve.stop()
        target.stop()


def test_series_and_assets_answer_only_for_what_exists(tmp_path: Path) -> None:
    """/api/series 404s an unknown scenario and gives a configured one; /assets serves only its files."""
    config = tmp_path / "web.yaml"
    config.write_text(CONFIG)
    args = ["--config", str(config), "--target", "http://127.0.0.1:9"]
    serve, url = start_serve([*args, "--history-file", str(tmp_path / "runs.jsonl")])
    try:
        assert http("GET", url + "/api/series?scenario=nope")[0] == 404
        doc = get_json(url + "/api/series?scenario=web_nightly")
        assert doc == {"scenario": "web_nightly", "endpoints": []}
        assert http("GET", url + "/api/series?scenario=web_live&since=soon")[0] == 400
        status, body = http("GET", url + "/assets/uPlot.iife.min.js")
        assert status == 200 and b"uPlot" in body
        assert http("GET", url + "/assets/..%2Fpage.py")[0] == 404
        status, body = http("GET", url + "/")
        assert status == 200 and b'src="assets/app.js"' in body
    finally:
        serve.stop()
