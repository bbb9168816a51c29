"""Each finished run (or verdict window) of ``loadsvc serve`` judged against its own past.

The baseline comes from the run history, so it survives restarts. The verdict
goes into the record (``regression``: /api/status, /api/runs, the run-end log
line) and into ``loadsvc_baseline_value``, ``loadsvc_baseline_runs`` and
``loadsvc_regression_detected``, which the regression alert rules read.
Judging never raises: whatever goes wrong, the run is recorded without a
regression verdict (never a false alarm) and the problem is logged.
"""

from __future__ import annotations

from typing import Any

import structlog

from loadsvc.baseline import (
    DEFAULT_POLICY,
    LATENCY_METRICS,
    BaselinePolicy,
    RegressionReport,
    choose_baseline,
    judge_against,
)
from loadsvc.recorder import Recorder
from loadsvc.service.history import RunHistory

log = structlog.get_logger("loadsvc.regressions")

# Records read back to find comparable runs: enough for a week of 5-minute windows.
_LOOKBACK = 2500


def _in_base_unit(metric: str, value: float) -> float:
    """Latencies are ms in the summary JSON and seconds in Prometheus."""
    return value / 1000.0 if metric in (*LATENCY_METRICS, "reconnect_p95") else value


class RegressionJudge:
    """Judges records against the history and exports the result; one per ``serve``."""

    def __init__(
        self, history: RunHistory, recorder: Recorder, policy: BaselinePolicy = DEFAULT_POLICY
    ) -> None:
        self.history = history
        self.recorder = recorder
        self.policy = policy
        # The series each scenario set last time, so a metric no longer judged goes back to 0.
        self._exported: dict[str, set[tuple[str, str]]] = {}

    def judge(self, doc: dict[str, Any]) -> None:
        """Add ``regression`` to a record about to enter the history, and export it."""
        scenario = str(doc.get("scenario"))
        try:
            past = self.history.recent(scenario, _LOOKBACK)
            report = judge_against(doc, choose_baseline(doc, past, self.policy), self.policy)
        except Exception as exc:  # a bug here must never cost the record or page anyone
            log.error("cannot judge the run against its baseline", scenario=scenario, exc_info=exc)
            report = RegressionReport("no_baseline", 0, self.policy.min_runs)
        doc["regression"] = report.doc()
        self._export(scenario, report)

    def _export(self, scenario: str, report: RegressionReport) -> None:
        now = {
            (f.endpoint, f.metric): (_in_base_unit(f.metric, f.baseline), f.regressed)
            for f in report.findings
        }
        cleared = self._exported.get(scenario, set()) - now.keys()
        self.recorder.regression_judged(scenario, report.runs, now, cleared)
        self._exported[scenario] = set(now)
