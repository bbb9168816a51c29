"""What a finished run (or verdict window) leaves behind: a history record and one log line.

The record is :func:`loadsvc.report.summary_doc` plus how the run was started
(``trigger``) and, for continuous runs, its ``window`` number. A run that
crashed gets a short record with ``result: error`` and is counted as such.

Recording never raises: a record that cannot be made or written (a value
the JSON encoder refuses, a history that fails) is logged and counted in
``failures``, and a short record stands in for it, so the run goes on.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from loadsvc.baseline import fingerprint
from loadsvc.recorder import Recorder
from loadsvc.report import summary_doc
from loadsvc.runner import RunResult, ScenarioRun
from loadsvc.service.history import RunHistory
from loadsvc.service.regressions import RegressionJudge

Trigger = Literal["schedule", "api", "continuous"]

# Per-endpoint values repeated in the log line (the history keeps them all).
_LOGGED_VALUES = ("count", "errors", "per_second", "p95_ms", "p99_ms")


class RunRecords:
    """Writes finished runs to the history and the log; the record is returned."""

    def __init__(
        self, history: RunHistory, recorder: Recorder, target_url: str, shard: str
    ) -> None:
        self.history = history
        self.recorder = recorder
        self.target_url = target_url
        self.shard = shard
        self.failures = 0  # records that could not be made or written
        self.regressions = RegressionJudge(history, recorder)

    def finished(
        self,
        run: ScenarioRun,
        result: RunResult,
        trigger: Trigger,
        *,
        window: int | None = None,
        final: bool = True,
        cut_short: bool = False,
    ) -> dict[str, Any]:
        """A run (``final``) or verdict window ended; its verdict is already published."""
        try:
            return self._finished(run, result, trigger, window, final, cut_short)
        except Exception as exc:
            self.failed(run, exc)
            return self._stand_in(run, result.result, trigger, window, exc)

    def _finished(
        self,
        run: ScenarioRun,
        result: RunResult,
        trigger: Trigger,
        window: int | None,
        final: bool,
        cut_short: bool,
    ) -> dict[str, Any]:
        doc = summary_doc(result, self.target_url)
        doc["trigger"] = trigger
        if window is not None:
            doc["window"] = window
        if cut_short:
            doc["stopped_early"] = True
        doc["fingerprint"] = fingerprint(run.spec, result.planned_s)
        self.regressions.judge(doc, run.spec.baseline)
        self.history.append(doc)
        run.log.info(
            "run ended" if final else "verdict window",
            result=result.result,
            passed=result.passed,
            window=window,
            duration_s=doc["duration_s"],
            stopped_early=doc["stopped_early"],
            thresholds=[j.describe() for j in result.verdict.judgements],
            failed=[j.describe() for j in result.verdict.breached()],
            regression=doc["regression"]["headline"],
            endpoints={e["endpoint"]: {k: e[k] for k in _LOGGED_VALUES} for e in doc["endpoints"]},
        )
        return doc

    def cut_short(
        self, run: ScenarioRun, trigger: Trigger, window: int | None = None
    ) -> dict[str, Any] | None:
        """A run cancelled past the stop deadline: judge what it measured so far."""
        if run.stats is None:
            return None
        try:
            result = run.roll_window_now()
        except Exception as exc:
            self.failed(run, exc)
            return None
        return self.finished(run, result, trigger, window=window, cut_short=True)

    def failed(self, run: ScenarioRun, exc: BaseException) -> None:
        """Judging or recording a run or window failed: logged and counted; the run goes on."""
        self.failures += 1
        self.recorder.record_failed(run.spec.name)
        run.log.error("cannot record the run", failures=self.failures, exc_info=exc)

    def _stand_in(
        self,
        run: ScenarioRun,
        result: str,
        trigger: Trigger,
        window: int | None,
        exc: BaseException,
    ) -> dict[str, Any]:
        """What /api/status shows of a window whose record failed: its result, and why."""
        doc: dict[str, Any] = {
            "scenario": run.spec.name,
            "run_id": run.run_id,
            "passed": result == "passed",
            "result": result,
            "ended_at": time.time(),
            "trigger": trigger,
            "record_error": type(exc).__name__,
            "endpoints": [],
            "thresholds": [],
        }
        if window is not None:
            doc["window"] = window
        return doc

    def crashed(self, run: ScenarioRun, trigger: Trigger, exc: BaseException) -> dict[str, Any]:
        """A run raised instead of returning a result: recorded and counted as ``error``."""
        now = time.time()
        started = run.started_wall or now
        name = run.spec.name
        doc: dict[str, Any] = {
            "scenario": name,
            "run_id": run.run_id,
            "passed": False,
            "result": "error",
            "started_at": started,
            "ended_at": now,
            "duration_s": round(now - started, 3),
            "error": type(exc).__name__,
            "target": self.target_url,
            "shard": self.shard,
            "trigger": trigger,
            "endpoints": [],
            "thresholds": [],
        }
        self.recorder.run_crashed(name)
        run.log.error("run crashed", result="error", exc_info=exc)
        try:
            self.history.append(doc)
        except Exception as write_exc:
            self.failed(run, write_exc)
        return doc
