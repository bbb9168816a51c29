"""``loadsvc run``: one run of one scenario, judged, with a summary; the exit code is the verdict."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, start_http_server

from loadsvc.baseline import fingerprint
from loadsvc.compare import judge_with_files, pinned, regression_lines
from loadsvc.config.spec import Config
from loadsvc.headline import final_line, final_state
from loadsvc.loopmon import LoopLagMonitor
from loadsvc.metrics import create_metrics
from loadsvc.progress import Progress
from loadsvc.recorder import Recorder
from loadsvc.report import busy_reason, summary_body, summary_doc
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.sampler import SeriesSampler
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
    (1 on a breach or a regression); the last line printed is the final result."""
    print(summary_body(result), file=sys.stdout, flush=True)
    doc = summary_doc(result, job.target.base_url)
    spec = job.config.scenario(job.scenario)
    if job.options.users is not None:  # the same scaled spec the run used
        spec = replace(spec, shape=spec.shape.scaled(job.options.users))
    doc["fingerprint"] = fingerprint(spec, result.planned_s)
    regressed = False
    if job.baseline is not None:
        report, notes = judge_with_files(doc, job.baseline, pinned(spec.baseline))
        doc["regression"] = report.doc()
        regressed = report.state == "regressed"
        print("\n".join([*(f"note: {n}" for n in notes), *regression_lines(report)]), flush=True)
    doc["final"] = final_state(result.result, regressed)
    doc["final_line"] = final_line(
        result.scenario, result.result, regressed, busy=busy_reason(result)
    )
    written: list[str] = []
    if job.summary_json is not None:
        job.summary_json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        written.append(f"summary JSON   {job.summary_json}")
    if job.report_html is not None and sampler is not None:
        write_report(job.report_html, report_data(doc, sampler, spec))
        written.append(f"HTML report    {job.report_html}")
    if written:
        print("\n" + "\n".join(["wrote:", *(f"  {w}" for w in written)]))
    print(doc["final_line"], flush=True)
    return EXIT_PASSED if result.passed and not regressed else EXIT_BREACHED
