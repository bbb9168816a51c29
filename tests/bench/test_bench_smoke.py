"""The benchmark harness end to end at toy sizes (a few connections, a second per window)."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench.goals import check
from bench.plan import SMOKE
from bench.report import tables
from bench.run import render, run_bench

pytestmark = [
    pytest.mark.skipif(shutil.which("wrk") is None, reason="the bench needs wrk"),
    pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="the bench needs locust"),
    pytest.mark.skipif(
        importlib.util.find_spec("websocket") is None, reason="the bench needs websocket-client"
    ),
]

REST_TOOLS = {
    "loadsvc",
    "loadsvc, validating keys",
    "Locust FastHttpUser",
    "aiohttp + uvloop, bare",
    "wrk (ceiling)",
}
WS_TOOLS = {"loadsvc", "locust", "websockets + orjson, bare"}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One smoke run of every section."""
    workdir: Path = tmp_path_factory.mktemp("bench")
    return run_bench(SMOKE, workdir)


def test_every_rest_throughput_row_has_numbers(results: dict[str, Any]) -> None:
    """Each REST generator has a row with requests per second and per CPU-second."""
    rows = results["rest_throughput"]
    assert {r["tool"] for r in rows} == REST_TOOLS
    for r in rows:
        assert all(is_number(r[k]) for k in ("req_per_s", "generator_cpu", "req_per_cpu_s"))
        assert r["req_per_s"] > 0


def test_every_rest_accuracy_row_has_numbers(results: dict[str, Any]) -> None:
    """loadsvc and Locust each report p50/p99 next to their probe's, at every size."""
    rows = results["rest_accuracy"]
    assert [r["users"] for r in rows] == list(SMOKE.accuracy_users)
    for r in rows:
        for tool in ("loadsvc", "locust"):
            figures = r[tool]
            keys = ("p50_ms", "p99_ms", "probe_p50_ms", "probe_p99_ms", "req_per_s")
            assert all(is_number(figures[k]) for k in keys), (tool, figures)
        assert r["loadsvc"]["result"] in ("passed", "failed", "generator_bound")


def test_every_ws_row_has_numbers(results: dict[str, Any]) -> None:
    """Each WS generator at each size: frames per CPU-second, KB per connection, p99, probe."""
    rows = results["ws"]
    assert {(r["tool"], r["connections"]) for r in rows} == {
        (tool, n) for tool in WS_TOOLS for n in SMOKE.ws_connections
    }
    for r in rows:
        keys = ("frames_per_s", "frames_per_cpu_s", "kb_per_connection", "p99_ms", "probe_p99_ms")
        assert all(is_number(r[k]) for k in keys), r
        assert r["frames"] > 0


def test_scrape_cost_has_numbers(results: dict[str, Any]) -> None:
    """The scrape row counts the default scenarios' series and times the rendering."""
    scrape = results["scrape"]
    assert scrape["scenarios"] == 4
    assert scrape["series"] > 0 and scrape["bytes"] > 0
    assert is_number(scrape["median_ms"])


def test_tables_and_goals_render(results: dict[str, Any]) -> None:
    """Every table renders with a row per measurement, and every goal is judged."""
    rendered = tables(results)
    assert [len(t.rows) for t in rendered] == [
        len(REST_TOOLS),
        2 * len(SMOKE.accuracy_users),
        len(WS_TOOLS) * len(SMOKE.ws_connections),
        len(WS_TOOLS) * len(SMOKE.ws_connections),
        1,
    ]
    assert len(check(results)) == 6
    text = render(results, markdown=False)
    markdown = render(results, markdown=True)
    assert "Goals" in text and "| generator |" in markdown
