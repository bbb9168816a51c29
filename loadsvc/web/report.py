"""``loadsvc run --report-html FILE``: one self-contained HTML file of a finished run.

It holds the run's charts (from the per-second series a sampler kept while the
run went on), the threshold table with the measured values, the scenario's
configuration and where it ran. Everything is inlined: it opens from disk with
no network.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from loadsvc import __version__
from loadsvc.config.spec import ScenarioSpec
from loadsvc.files import write_atomically
from loadsvc.runner import RunResult, ScenarioRun
from loadsvc.sampler import SeriesSampler
from loadsvc.web.page import report_page


async def sample_run(run: ScenarioRun, sampler: SeriesSampler, every_s: float = 1.0) -> None:
    """Look at ``run`` every ``every_s`` seconds until cancelled; :func:`sample_end` ends it."""
    while True:
        await asyncio.sleep(every_s)
        if run.stats is not None:
            sampler.sample(run.stats, run.user_count())


def sample_end(run: ScenarioRun, sampler: SeriesSampler, result: RunResult) -> None:
    """The last look at a finished run: what it did since the previous look, to its end."""
    if run.stats is not None:
        sampler.sample(run.stats, 0)


def scenario_config(spec: ScenarioSpec) -> Any:
    """The scenario's resolved configuration as JSON-ready data (it holds no secrets)."""
    return orjson.loads(orjson.dumps(spec, default=str))


_QUANTILE_FIELD = {0.5: "p50_s", 0.95: "p95_s", 0.99: "p99_s"}


def first_breaches(series: dict[str, Any], thresholds: list[dict[str, Any]]) -> dict[str, Any]:
    """When each breached threshold was first over its limit in a second of the run
    (endpoint -> name -> Unix time): a latency quantile the series keeps, or the error ratio."""
    out: dict[str, dict[str, float]] = {}
    by_endpoint: dict[str, list[dict[str, Any]]] = {}
    for ep in series.get("endpoints", []):
        label = ep["endpoint"].split(" ", 1)[-1] if ep["kind"] == "http" else ep["endpoint"]
        by_endpoint.setdefault(label, []).append(ep["points"])
    for t in thresholds:
        if t.get("state") != "breached" or t.get("limit") is None:
            continue
        for points in by_endpoint.get(t["endpoint"], []):
            if t["name"] == "error_ratio":
                over = [
                    r > 0 and e / r > t["limit"]
                    for e, r in zip(points["errors"], points["requests"], strict=True)
                ]
            elif t.get("unit") == "ms" and t.get("quantile") in _QUANTILE_FIELD:
                column = points[_QUANTILE_FIELD[t["quantile"]]]
                over = [v is not None and v * 1000 > t["limit"] for v in column]
            else:
                continue
            first = next((at for at, hit in zip(points["t"], over, strict=True) if hit), None)
            if first is not None:
                seen = out.setdefault(t["endpoint"], {})
                seen[t["name"]] = min(first, seen.get(t["name"], first))
    return out


def report_data(
    summary: dict[str, Any], sampler: SeriesSampler, spec: ScenarioSpec
) -> dict[str, Any]:
    """What the report draws: the run's summary document (thresholds, and the verdict
    against a baseline when there was one) with each breach's first second, series,
    configuration, environment."""
    series = sampler.series.get(spec.name)
    doc = series.to_doc() if series else {"scenario": spec.name, "endpoints": []}
    return {
        "summary": {**summary, "first_breach": first_breaches(doc, summary["thresholds"])},
        "series": doc,
        "config": scenario_config(spec),
        "environment": {
            "target": summary["target"],
            "shard": summary["shard"],
            "version": __version__,
        },
    }


def write_report(path: Path, data: dict[str, Any]) -> None:
    """Write the report atomically (a reader never sees half a file)."""
    write_atomically(path, report_page(data).encode("utf-8"))
