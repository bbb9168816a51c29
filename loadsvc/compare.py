"""``loadsvc compare A.json B.json`` and ``loadsvc run --baseline``: one-shot regression checks.

Both judge a summary written by ``loadsvc run --summary-json`` against other
summaries with the same rules as ``loadsvc serve`` (tolerances and a test on
the run's own samples), so CI can fail on a regression that stays under every
threshold. A baseline given by hand needs one comparable run, not three, and
is compared even where the scenario's ``baseline.enabled`` is false; the
tolerances are the scenario's (``run --baseline``, ``compare --config``).

Nothing is summed up as "no regression" that was not compared: summaries are
checked field by field when read (exit 2 naming the file and the field), two
runs of different scenarios or setups are not compared unless ``--force``
(exit 2), and a comparison that left a metric out (an endpoint renamed, a
value missing on one side, no samples to test) exits 3, its headline saying
what was not compared.
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
from loadsvc.text import inert

EXIT_SAME = 0
EXIT_REGRESSED = 1
EXIT_UNREADABLE = 2
EXIT_INCOMPLETE = 3  # no regression in what was compared, but something was not compared


class BadBaseline(ValueError):
    """A baseline file or folder that cannot judge this run (named with the field at fault)."""


def exit_code(report: RegressionReport) -> int:
    """1 regressed, 3 incomplete (something not compared), else 0."""
    if report.state == "regressed":
        return EXIT_REGRESSED
    return EXIT_SAME if report.complete and report.state == "ok" else EXIT_INCOMPLETE


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


def compare_files(a: Path, b: Path, config: Config | None = None, force: bool = False) -> int:
    """Print B judged against A side by side; exit 1 on a regression, 2 for unreadable input
    or runs of different scenarios or setups (unless ``force``), 3 when incomplete.

    The tolerances are those of B's scenario in ``config``, else the built-in ones.
    """
    try:
        base, run = read_summary(a), read_summary(b)
    except UnreadableSummary as exc:
        print(f"loadsvc compare: {inert(str(exc))}", file=sys.stderr)
        return EXIT_UNREADABLE
    for key, what in (("scenario", "scenarios"), ("fingerprint", "setups")):
        if base.get(key) != run.get(key):
            said = (
                f"{a} and {b} are runs of different {what} ({key} "
                f"{inert(repr(base.get(key)))} vs {inert(repr(run.get(key)))})"
            )
            if not force:
                print(f"loadsvc compare: {said}; --force compares them anyway", file=sys.stderr)
                return EXIT_UNREADABLE
            print(f"note: {said}; compared anyway (--force)", file=sys.stderr)
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
    report = judge_against(run, [base], policy)
    print(inert(side_by_side(report, "A " + _label(base, a), "B " + _label(run, b)), keep="\n"))
    print()
    print(inert("\n".join(regression_lines(report)), keep="\n"))
    return exit_code(report)


def _label(doc: Mapping[str, Any], path: Path) -> str:
    run_id = doc.get("run_id")
    return str(run_id) if isinstance(run_id, str) else path.name


def baseline_for(
    scenario: str, print_: str, path: Path, policy: BaselinePolicy = PINNED_POLICY
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """``run --baseline``, before any load: the comparable summaries in ``path`` for a run of
    ``scenario`` with fingerprint ``print_``, and notes. BadBaseline (exit 2) names the file
    and field when a file given alone is unreadable, invalid, of another scenario or setup,
    or not a healthy run; or when a folder holds nothing comparable. Unreadable files in a
    folder are skipped with a note."""
    probe = {"scenario": scenario, "fingerprint": print_}
    if not path.is_dir():
        try:
            doc = read_summary(path)
        except UnreadableSummary as exc:
            raise BadBaseline(str(exc)) from None
        if doc.get("scenario") != scenario:
            raise BadBaseline(
                f"{path}: scenario: {inert(repr(doc.get('scenario')))}, this run is {scenario!r}"
            )
        if doc.get("fingerprint") != print_:
            raise BadBaseline(
                f"{path}: fingerprint: {inert(repr(doc.get('fingerprint')))}, this run is "
                f"{print_!r} (users, shape, endpoints, thresholds or duration differ)"
            )
        if not choose_baseline(probe, [doc], policy):
            raise BadBaseline(
                f"{path}: result: {inert(repr(doc.get('result')))}: not a healthy run to compare "
                "with (it failed, regressed or its generator was busy)"
            )
        return [doc], []
    docs, notes = read_summaries(path)
    chosen = choose_baseline(probe, docs, policy)
    if not chosen:
        raise BadBaseline(
            f"{path}: no healthy summary of scenario {scenario!r} with fingerprint {print_!r} "
            f"among {len(docs)} readable file(s)" + (f"; {'; '.join(notes)}" if notes else "")
        )
    others = len(docs) - len(chosen)
    if others:
        notes.append(
            f"{others} of {len(docs)} baseline summaries not compared: another scenario or "
            "setup, or a run that failed or regressed"
        )
    return chosen, notes
