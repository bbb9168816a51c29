"""``loadsvc run``: one run of one scenario, judged, with a summary; the exit code is the verdict.

``--baseline`` is read and checked before the first connection
(:func:`with_baseline`): a file that cannot judge this run exits 2 with no load sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, start_http_server

from loadsvc.baseline import fingerprint, judge_against
from loadsvc.compare import EXIT_INCOMPLETE, baseline_for, exit_code, pinned, regression_lines
from loadsvc.config.spec import Config, ScenarioSpec
from loadsvc.headline import final_line, final_state
from loadsvc.loopmon import LoopLagMonitor
from loadsvc.metrics import create_metrics
from loadsvc.progress import Progress
from loadsvc.recorder import Recorder
from loadsvc.report import busy_reason, short_reason, summary_body, summary_doc
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.sampler import SeriesSampler
from loadsvc.text import inert
from loadsvc.users.base import Target
from loadsvc.verdict import trust_limit
from loadsvc.web.report import report_data, sample_end, sample_run, write_report

EXIT_PASSED = 0
EXIT_BREACHED = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class OneShot:
    """Everything ``loadsvc run`` was asked to do."""

    config: Config
    scenario: str
    target: Target
    options: RunOptions
    summary_json: Path | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    progress_interval: float | None = None
    report_html: Path | None = None
    baseline: Path | None = None  # a summary or a folder of them to judge the run against
    # The comparable summaries read from ``baseline`` before the run, and notes on the others.
    baseline_docs: tuple[Mapping[str, Any], ...] = ()
    baseline_notes: tuple[str, ...] = ()


def run_spec(job: OneShot) -> tuple[ScenarioSpec, float | None]:
    """The scenario as the run will measure it (scaled by ``--users``) and its planned length,
    as ScenarioRun works them out: what the run's fingerprint is made of."""
    spec = job.config.scenario(job.scenario)
    if job.options.users is not None:
        spec = replace(spec, shape=spec.shape.scaled(job.options.users))
    planned = spec.shape.duration()
    if job.options.duration_s is not None:
        planned = (
            job.options.duration_s if planned is None else min(planned, job.options.duration_s)
        )
    return spec, planned


def with_baseline(job: OneShot) -> OneShot:
    """``job`` with its ``--baseline`` read and checked (BadBaseline names file and field)."""
    if job.baseline is None:
        return job
    spec, planned = run_spec(job)
    docs, notes = baseline_for(
        job.scenario, fingerprint(spec, planned), job.baseline, pinned(spec.baseline)
    )
    return replace(job, baseline_docs=tuple(docs), baseline_notes=tuple(notes))


async def run_once(job: OneShot, sampler: SeriesSampler | None = None) -> RunResult:
    """Run the scenario with live progress; SIGINT/SIGTERM end it gracefully.

    With a ``sampler``, the run's per-second series is kept in it (for the HTML report).
    """
    registry = CollectorRegistry()
    spec = job.config.scenario(job.scenario)
    metrics = create_metrics(registry, job.config.latency_boundaries())
    if job.metrics_port is not None:
        start_http_server(job.metrics_port, addr=job.metrics_host, registry=registry)
    recorder = Recorder(metrics)
    monitor = LoopLagMonitor(recorder, limit_s=trust_limit(spec.thresholds))
    monitor.start()
    run = ScenarioRun(spec, job.target, recorder, job.options, monitor=monitor)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, run.stop)
    progress = Progress(run, interval=job.progress_interval)
    reporter = loop.create_task(progress.loop())
    sampling = loop.create_task(sample_run(run, sampler)) if sampler is not None else None
    try:
        result = await run.execute()
    finally:
        for task in (reporter, sampling):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await monitor.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    if sampler is not None:
        sample_end(run, sampler, result)
    return result


def finish(job: OneShot, result: RunResult, sampler: SeriesSampler | None = None) -> int:
    """Print the table, write the JSON and the HTML report, and return the exit code
    (1 on a breach or a regression, 3 when the comparison with the baseline was incomplete);
    the last line printed is the final result, which the exit code matches."""
    print(inert(summary_body(result), keep="\n"), file=sys.stdout, flush=True)
    doc = summary_doc(result, job.target.base_url)
    spec, _ = run_spec(job)  # the same scaled spec the run used
    doc["fingerprint"] = fingerprint(spec, result.planned_s)
    compared = EXIT_PASSED
    if job.baseline is not None:
        report = judge_against(doc, job.baseline_docs, pinned(spec.baseline))
        doc["regression"] = report.doc()
        compared = exit_code(report)
        lines = [*(f"note: {n}" for n in job.baseline_notes), *regression_lines(report)]
        print(inert("\n".join(lines), keep="\n"), flush=True)
    regressed, incomplete = compared == EXIT_BREACHED, compared == EXIT_INCOMPLETE
    doc["final"] = final_state(result.result, regressed, incomplete)
    doc["final_line"] = final_line(
        result.scenario,
        result.result,
        regressed,
        busy=busy_reason(result),
        incomplete=incomplete,
        short=short_reason(result),
    )
    written: list[str] = []
    if job.summary_json is not None:
        job.summary_json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        written.append(f"summary JSON   {job.summary_json}")
    if job.report_html is not None and sampler is not None:
        write_report(job.report_html, report_data(doc, sampler, spec))
        written.append(f"HTML report    {job.report_html}")
    if written:
        print("\n" + "\n".join(["wrote:", *(f"  {inert(w)}" for w in written)]))
    print(inert(doc["final_line"]), flush=True)
    if not result.passed or compared == EXIT_BREACHED:
        return EXIT_BREACHED
    return compared  # 0, or 3: passed, but a metric could not be compared with the baseline
