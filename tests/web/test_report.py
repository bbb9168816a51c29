"""``loadsvc run --report-html``: one file that a real browser renders offline, every chart drawn."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.configs import EVERY_KIND_USERS
from tests.support.http import set_faults
from tests.support.processes import loadsvc, target_process
from tests.web.chromium import CHROMIUM, chromium

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")

# Where the screenshots go for the reader of the tests (CI may keep the folder).
SHOTS = Path(os.environ.get("LOADSVC_TEST_SCREENSHOTS", "/tmp/loadsvc-screenshots"))

MIX = (
    """\
version: 1
scenarios:
  web_mix:
    description: a WS stream, a reconnecting WS client and a REST poller
    schedule: {kind: continuous, verdict_every: 1m}
    shape: {kind: constant, users: 6, duration: 4s}
    users:
"""
    + EVERY_KIND_USERS
)

CHARTS = "window.loadsvc.charts()"


async def test_report_of_a_ws_and_rest_run_renders_offline_with_every_chart(
    tmp_path: Path,
) -> None:
    """The report opens from disk with the network off: no errors, every chart has points, thresholds drawn."""
    config = tmp_path / "mix.yaml"
    config.write_text(MIX)
    report = tmp_path / "report.html"
    with target_process() as url:
        done = loadsvc(
            "run", "web_mix", "--config", str(config), "--target", url, "--report-html", str(report)
        )
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert "http://" not in html.replace(url, "")  # nothing fetched from anywhere but the data
    async with chromium() as browser:
        page = await browser.open(report.as_uri(), offline=True)
        charts = await page.wait_for(f"{CHARTS}.length >= 8 && {CHARTS}", 10, "charts drawn")
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(SHOTS / "report-web_mix.png")
        assert page.errors == []
    titles = {c["title"] for c in charts}
    assert {
        "Users",
        "Error ratio (rolling 30 s)",
        "Open connections",
        "Reconnect time p95",
    } <= titles
    assert {"Latency GET /api/market/snapshot", "Latency /ws/market (delivery)"} <= titles
    for chart in charts:
        assert chart["points"] > 0, chart
        if chart["title"].startswith("Latency"):
            assert chart["thresholdPoints"] > 0, chart
    assert (SHOTS / "report-web_mix.png").stat().st_size > 10_000


async def test_report_of_foreign_flow_has_its_threshold_table(tmp_path: Path) -> None:
    """The seed's foreign_flow report lists each threshold with its measured value and the config."""
    report = tmp_path / "r.html"
    with target_process() as url:
        done = loadsvc(
            "run", "foreign_flow", "--target", url, "--users", "10", "--duration", "3s",
            "--report-html", str(report),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    async with chromium() as browser:
        page = await browser.open(report.as_uri(), offline=True)
        await page.wait_for("window.loadsvc.state.updates > 0", 10, "report drawn")
        rows = await page.evaluate(
            "Array.from(document.querySelectorAll('#scenarios > table:first-of-type tbody tr'))"
            ".map(r => Array.from(r.cells).map(c => c.textContent))"
        )
        config = await page.evaluate("document.querySelector('#runs pre').textContent")
        charts = await page.evaluate(CHARTS)
        assert page.errors == []
    assert [r[1] for r in rows] == ["http_latency p95", "error_ratio"]
    assert all(r[3] != "\u2013" and r[4] == "passed" for r in rows), rows
    assert "/api/market/foreign-detail" in config
    assert all(c["points"] > 0 for c in charts)


async def test_report_of_a_run_judged_against_a_baseline_shows_the_regression(
    tmp_path: Path,
) -> None:
    """run --baseline --report-html with +30 ms: the report says REGRESSION in one line and
    marks p95 REGRESSED in its findings table, next to a passed threshold verdict."""
    base, report = tmp_path / "a.json", tmp_path / "r.html"
    common = ("run", "foreign_flow", "--users", "10", "--duration", "3s")
    with target_process() as url:
        done = loadsvc(*common, "--target", url, "--summary-json", str(base))
        assert done.returncode == 0, done.stderr
        set_faults(url, {"latency_ms": {"/api/market/foreign-detail": 30}})
        done = loadsvc(
            *common, "--target", url, "--baseline", str(base), "--report-html", str(report)
        )
    assert done.returncode == 1, done.stdout + done.stderr
    async with chromium() as browser:
        page = await browser.open(report.as_uri(), offline=True)
        await page.wait_for("window.loadsvc.state.updates > 0", 10, "report drawn")
        verdict = await page.evaluate("document.querySelector('p[class^=verdict]').textContent")
        line = await page.evaluate("document.querySelector('#baseline').textContent")
        rows = await page.evaluate(
            "Array.from(document.querySelectorAll('#scenarios > table:last-of-type tbody tr'))"
            ".map(r => Array.from(r.cells).map(c => c.textContent))"
        )
        assert page.errors == []
    assert verdict == "verdict: passed"
    assert line.startswith("against the baseline: REGRESSION: /api/market/foreign-detail ")
    p95 = next(r for r in rows if r[1] == "p95")
    assert p95[0] == "/api/market/foreign-detail" and p95[5] == "REGRESSED", rows
