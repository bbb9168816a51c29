"""Three ``serve --shard i/3`` replicas scraped by one real Prometheus add up to the config.

One module-scoped run, in order: a single unsharded ``serve`` against the
reference target (job ``single``), stopped; then three replicas started one
after another (job ``shards``), the same Prometheus scraping every second.
The totals must be exact; the p95 aggregated over replicas must agree with the
single process's (see :func:`agree` for what "agree" means and why).
"""

from __future__ import annotations

import itertools
import json
import math
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from loadsvc.localstack import Process, have, start_prometheus
from loadsvc.metrics import latency_buckets
from tests.support import Proc, free_port, get_json, start_serve, start_target, wait_for
from tests.support.configs import config_text, rest_user, scenario

pytestmark = pytest.mark.skipif(not have("prometheus"), reason="needs the prometheus binary")

WS_USERS = 151  # not divisible by 3: shares 51 + 50 + 50
REST_USERS = 101  # 34 + 34 + 33
# The p95 of each job is read over this much full load: ~1,500 REST requests at
# 101 requests/s, some 75 of them above the p95, for a quantile known to a bucket.
WINDOW_S = 15
WINDOW = f"{WINDOW_S}s"
CONFIG = config_text(
    scenario(
        "market_stream",
        schedule="{kind: continuous, verdict_every: 5m}",
        shape=f"{{kind: constant, users: {WS_USERS}, duration: 5m, spawn_rate: 200}}",
    ),
    scenario(
        "foreign_flow",
        schedule="{kind: continuous, verdict_every: 5m}",
        shape=f"{{kind: constant, users: {REST_USERS}, duration: 5m, spawn_rate: 200}}",
        users=rest_user("/api/market/foreign-detail"),
    ),
)


def p95_expr(job: str) -> str:
    """The aggregated p95 of foreign_flow's REST latency over the job's instances."""
    bucket = f'loadsvc_http_request_duration_seconds_bucket{{job="{job}",scenario="foreign_flow"}}'
    return f"histogram_quantile(0.95, sum by (le) (rate({bucket}[{WINDOW}])))"


def steady_expr(job: str) -> str:
    """Non-empty once every 1 s step of the last WINDOW saw the whole REST load running."""
    users = f'sum(loadsvc_scenario_users{{job="{job}",scenario="foreign_flow"}})'
    return (
        f"min_over_time({users}[{WINDOW}:1s]) == {REST_USERS}"
        f" and count_over_time({users}[{WINDOW}:1s]) >= {WINDOW_S}"
    )


def query(prometheus: str, expr: str) -> list[Any]:
    """The result vector of an instant query."""
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc = json.loads(resp.read())
    assert doc["status"] == "success", doc
    result: list[Any] = doc["data"]["result"]
    return result


def scalar(prometheus: str, expr: str) -> float | None:
    """The one value of ``expr`` now, or None when it has no result."""
    found = query(prometheus, expr)
    return float(found[0]["value"][1]) if found else None


def bucket_width(value: float) -> float:
    """Width of the latency bucket holding ``value``: histogram_quantile's own error bound."""
    bounds = (0.0, *latency_buckets())
    for lower, upper in itertools.pairwise(bounds):
        if lower < value <= upper:
            return upper - lower
    return math.inf


def agree(single: float, aggregated: float) -> bool:
    """Two histogram_quantile estimates of the same load agree.

    Each estimate is linearly interpolated inside the bucket that holds the
    95th observation, so it is off the true p95 by at most that bucket's width.
    Two estimates of the same true p95 are therefore within the sum of their
    buckets' widths of each other (the same bucket, or adjacent ones when the
    true p95 sits near a boundary).
    """
    return abs(single - aggregated) <= bucket_width(single) + bucket_width(aggregated)


@dataclass
class Measured:
    """What the run saw, for the tests to assert and to report."""

    single_p95: float
    shards_p95: float = math.nan
    ws_sum: float = 0
    rest_sum: float = 0
    target_ws: int = 0
    shards_in_status: list[str] = field(default_factory=list)
    build_info_shards: list[str] = field(default_factory=list)


def steady_p95(prometheus: str, job: str, within: float) -> float:
    """Wait (bounded) for WINDOW of the full load of ``job``, then its aggregated p95."""
    what = f"{WINDOW} of full load ({job})"
    wait_for(lambda: query(prometheus, steady_expr(job)), within, what, 1)
    value = scalar(prometheus, p95_expr(job))
    assert value is not None and math.isfinite(value), value
    return value


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Measured]:
    """The single run, then the three replicas, measured through one Prometheus."""
    work = tmp_path_factory.mktemp("shards")
    config = work / "config.yaml"
    config.write_text(CONFIG)
    single_port, shard_ports = free_port(), [free_port() for _ in range(3)]
    prom_cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "single", "static_configs": [{"targets": [f"127.0.0.1:{single_port}"]}]},
            {
                "job_name": "shards",
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in shard_ports]}],
            },
        ],
    }
    started: list[Proc] = []
    prometheus: Process | None = None
    target, target_port = start_target()
    target_url = f"http://127.0.0.1:{target_port}"
    common = ["--config", str(config), "--target", target_url]
    try:
        prometheus = start_prometheus(prom_cfg, work / "prometheus", free_port())
        prom = prometheus.url

        single, _ = start_serve(
            [*common, "--port", str(single_port), "--history-file", str(work / "single.jsonl")]
        )
        started.append(single)
        result = Measured(single_p95=steady_p95(prom, "single", 60))
        assert single.stop() == 0

        urls = []
        for i, port in enumerate(shard_ports):  # started one after another, not together
            history = str(work / f"shard{i}.jsonl")
            proc, url = start_serve(
                [*common, "--port", str(port), "--shard", f"{i}/3", "--history-file", history]
            )
            started.append(proc)
            urls.append(url)

        def totals() -> tuple[float | None, float | None, int]:
            ws = 'sum(loadsvc_ws_connections{job="shards",scenario="market_stream"})'
            rest = 'sum(loadsvc_scenario_users{job="shards",scenario="foreign_flow"})'
            stats = get_json(target_url + "/admin/stats")
            return scalar(prom, ws), scalar(prom, rest), int(stats["connections"]["/ws/market"])

        wait_for(lambda: totals() == (WS_USERS, REST_USERS, WS_USERS), 30, "sharded totals", 0.5)
        result.shards_p95 = steady_p95(prom, "shards", 60)
        result.ws_sum, result.rest_sum, result.target_ws = totals()  # type: ignore[assignment]
        result.shards_in_status = [get_json(u + "/api/status")["service"]["shard"] for u in urls]
        info = query(prom, 'loadsvc_build_info{job="shards"}')
        result.build_info_shards = sorted(s["metric"]["shard"] for s in info)
        yield result
    finally:
        for proc in started:
            proc.stop()
        if prometheus is not None:
            prometheus.stop()
        target.stop()


def test_shards_add_up_exactly(measured: Measured) -> None:
    """Summed over 3 replicas: 151 WS connections (as the target counts them) and 101 REST users."""
    assert (measured.ws_sum, measured.rest_sum, measured.target_ws) == (151, 101, 151)


def test_each_replica_reports_its_shard(measured: Measured) -> None:
    """/api/status and loadsvc_build_info{shard} name shards 0/3, 1/3 and 2/3."""
    assert measured.shards_in_status == ["0/3", "1/3", "2/3"]
    assert measured.build_info_shards == ["0/3", "1/3", "2/3"]


def test_aggregated_p95_agrees_with_a_single_process(measured: Measured) -> None:
    """The p95 summed over replicas by Prometheus agrees with one unsharded process's p95."""
    single, sharded = measured.single_p95, measured.shards_p95
    print(f"p95 foreign_flow: single {single * 1000:.2f} ms, 3 shards {sharded * 1000:.2f} ms")
    assert agree(single, sharded), (single, sharded)
