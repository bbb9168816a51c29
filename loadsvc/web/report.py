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


def report_data(
    summary: dict[str, Any], sampler: SeriesSampler, spec: ScenarioSpec
) -> dict[str, Any]:
    """What the report draws: the run's summary document (thresholds, and the verdict
    against a baseline when there was one), series, configuration, environment."""
    series = sampler.series.get(spec.name)
    return {
        "summary": summary,
        "series": series.to_doc() if series else {"scenario": spec.name, "endpoints": []},
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
