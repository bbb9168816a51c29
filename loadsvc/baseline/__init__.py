"""Regressions: a run judged against a baseline of comparable past runs of its scenario.

``select`` chooses the baseline (history records or summary files), ``regression``
judges a run against it (tolerances and a test on the run's own samples),
``findings`` says what the judgement found, ``stats`` holds the exact tests,
``validate`` the checks every past record passes.
"""

from loadsvc.baseline.findings import Finding, RegressionReport
from loadsvc.baseline.regression import (
    DEFAULT_POLICY,
    LATENCY_METRICS,
    METRICS,
    judge_against,
)
from loadsvc.baseline.select import (
    UnreadableSummary,
    choose_anchor,
    choose_baseline,
    choose_references,
    choose_trend,
    fingerprint,
    read_summaries,
    read_summary,
    selection_view,
)
from loadsvc.baseline.validate import record_problem
from loadsvc.config.spec import BaselinePolicy, Tolerance

__all__ = [
    "DEFAULT_POLICY",
    "LATENCY_METRICS",
    "METRICS",
    "BaselinePolicy",
    "Finding",
    "RegressionReport",
    "Tolerance",
    "UnreadableSummary",
    "choose_anchor",
    "choose_baseline",
    "choose_references",
    "choose_trend",
    "fingerprint",
    "judge_against",
    "read_summaries",
    "read_summary",
    "record_problem",
    "selection_view",
]
