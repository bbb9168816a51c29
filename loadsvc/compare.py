"""``loadsvc compare A.json B.json`` and ``loadsvc run --baseline``: one-shot regression checks.

Both judge a summary written by ``loadsvc run --summary-json`` against other
summaries with the same rules as ``loadsvc serve`` (tolerances and a test on
the run's own samples), so CI can fail on a regression that stays under every
threshold. A baseline given by hand needs one comparable run, not three, and
is compared even where the scenario's ``baseline.enabled`` is false; the
tolerances are the scenario's (``run --baseline``, ``compare --config``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadsvc.baseline import (
    BaselinePolicy,
    Finding,
    RegressionReport,
    UnreadableSummary,
    choose_baseline,
    judge_against,
    read_summaries,
    read_summary,
)
from loadsvc.config.spec import Config

EXIT_SAME = 0
EXIT_REGRESSED = 1
EXIT_UNREADABLE = 2


def pinned(policy: BaselinePolicy) -> BaselinePolicy:
    """A baseline someone pinned by hand: trusted from one run on, the last runs given."""
    return replace(policy, enabled=True, min_runs=1, same_time_of_day=False)


PINNED_POLICY = pinned(BaselinePolicy())


def _cell(f: Finding, value: float) -> str:
    if f.unit == "ms":
        return f"{value:.1f} ms"
    if f.unit == "ratio":
        return f"{value * 100:.2f} %"
    return f"{value:.2f}"


def _verdict(f: Finding) -> str:
    if f.regressed:
        return "REGRESSED"
    if f.beyond:
        return "noise" if f.p_value is not None else "untested"
    return "ok"


def side_by_side(report: RegressionReport, a_name: str, b_name: str) -> str:
    """A table of every compared metric: baseline (A), run (B), change, verdict."""
    head = ("endpoint", "metric", a_name, b_name, "change", "verdict")
    rows = [head]
    for f in report.findings:
        change = f"{(f.value - f.baseline) / f.baseline * 100:+.0f} %" if f.baseline else "-"
        rows.append(
            (f.endpoint, f.metric, _cell(f, f.baseline), _cell(f, f.value), change, _verdict(f))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def regression_lines(report: RegressionReport) -> list[str]:
    """The regression part of a terminal summary: the headline, then each regression."""
    if report.state != "regressed":
        return [f"baseline: {report.headline()}"]
    return ["baseline: REGRESSION"] + [f"! {f.describe()}" for f in report.regressions()]


def compare_files(a: Path, b: Path, config: Config | None = None) -> int:
    """Print B judged against A side by side; exit 1 on a regression, 2 for unreadable input
    or two different scenarios.

    The tolerances are those of B's scenario in ``config``, else the built-in ones.
    """
    try:
        base, run = read_summary(a), read_summary(b)
    except UnreadableSummary as exc:
        print(f"loadsvc compare: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if base.get("scenario") != run.get("scenario"):
        print(
            f"loadsvc compare: {a} is scenario {base.get('scenario')!r} and {b} is "
            f"{run.get('scenario')!r}: only runs of one scenario compare",
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    policy = PINNED_POLICY
    if config is not None:
        names = [s.name for s in config.scenarios]
        if run.get("scenario") in names:
            policy = pinned(config.scenario(str(run["scenario"])).baseline)
        else:
            print(
                f"note: scenario {run.get('scenario')!r} is not in {config.source}: "
                "the built-in tolerances apply",
                file=sys.stderr,
            )
    if base.get("fingerprint") != run.get("fingerprint"):
        print(
            "note: the two runs measured different setups (users, shape, endpoints or "
            "thresholds differ); compared anyway",
            file=sys.stderr,
        )
    report = judge_against(run, [base], policy)
    print(side_by_side(report, "A " + _label(base, a), "B " + _label(run, b)))
    print()
    print("\n".join(regression_lines(report)))
    return EXIT_REGRESSED if report.state == "regressed" else EXIT_SAME


def _label(doc: Mapping[str, Any], path: Path) -> str:
    run_id = doc.get("run_id")
    return str(run_id) if isinstance(run_id, str) else path.name


def judge_with_files(
    doc: Mapping[str, Any], path: Path, policy: BaselinePolicy = PINNED_POLICY
) -> tuple[RegressionReport, list[str]]:
    """``run --baseline``: ``doc`` against the comparable summaries in ``path``, and notes.

    Unreadable files in a folder are skipped with a note (fewer runs, never an alarm).
    """
    docs, notes = read_summaries(path)
    chosen = choose_baseline(doc, docs, policy)
    others = len(docs) - len(chosen)
    if others:
        notes.append(
            f"{others} of {len(docs)} baseline summaries not compared: another scenario or "
            "setup, or a run that failed or regressed"
        )
    return judge_against(doc, chosen, policy), notes
