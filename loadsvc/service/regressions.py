"""Each finished run (or verdict window) of ``loadsvc serve`` judged against its own past.

The baseline comes from the run history, so it survives restarts. The verdict
goes into the record (``regression``: /api/status, /api/runs, the run-end log
line) and into ``loadsvc_baseline_value``, ``loadsvc_baseline_runs`` and
``loadsvc_regression_detected``, which the regression alert rules read.
Judging never raises: whatever goes wrong, the run is recorded without a
regression verdict (never a false alarm) and the problem is logged.

**A poisoned past cannot switch detection off.** Every history record is
checked before it may enter a baseline (``loadsvc.baseline.validate``); a bad
one is skipped, logged once and counted in
``loadsvc_baseline_records_skipped_total``. A scenario that was compared
before and now is not (its comparable runs gone, e.g. a history lost or
rewritten) says ``BASELINE LOST`` and sets ``loadsvc_baseline_compared`` to 0,
which ``LoadsvcRegressionNotCompared`` alerts on once it lasts.

**Accepting a new baseline** (``POST /api/scenarios/{name}/accept-baseline``):
after an intended change (a deploy that is slower on purpose) the runs since
the regression began become the new normal. The scenario's baseline from then
on is made only of runs started at or after that moment, regressed ones
included; its regression series go back to 0 at once. When the last run did
not regress, the baseline starts again from the next run. Acceptances are kept
in a small JSON file beside the history, so they survive restarts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import structlog

from loadsvc.baseline import (
    DEFAULT_POLICY,
    LATENCY_METRICS,
    BaselinePolicy,
    RegressionReport,
    choose_references,
    judge_against,
    record_problem,
    selection_view,
)
from loadsvc.baseline.findings import number
from loadsvc.baseline.validate import EARLIEST_S, LATEST_S
from loadsvc.files import write_atomically
from loadsvc.recorder import Recorder
from loadsvc.service.history import HistoryEntry, RunHistory

log = structlog.get_logger("loadsvc.regressions")

# Records read back to find comparable runs: enough for a week of 5-minute windows.
_LOOKBACK = 2500


def _in_base_unit(metric: str, value: float) -> float:
    """Latencies are ms in the summary JSON and seconds in Prometheus."""
    return value / 1000.0 if metric in (*LATENCY_METRICS, "reconnect_p95") else value


def accepted_file(history: Path) -> Path:
    """Where the acceptances of a history live: ``runs.jsonl`` -> ``runs.jsonl.baselines.json``."""
    return history.with_name(history.name + ".baselines.json")


class CannotAccept(Exception):
    """An acceptance that could not be kept (the file cannot be written): nothing changed."""


class AcceptedBaselines:
    """Per scenario, since when its baseline was accepted: a small JSON file, written whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._since: dict[str, dict[str, float]] = {}
        try:
            doc = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as exc:
            # The older baseline comes back; nothing else is lost and nothing breaks.
            log.warning(
                "cannot read the accepted baselines; none apply", path=str(path), error=str(exc)
            )
            return
        bad: list[str] = []
        for scenario, entry in doc.items() if isinstance(doc, dict) else ():
            since = number(entry.get("since")) if isinstance(entry, dict) else None
            at = number(entry.get("accepted_at")) if isinstance(entry, dict) else None
            if since is None or not EARLIEST_S <= since <= LATEST_S:
                # e.g. since: 1e308 would leave the scenario without a baseline for good.
                bad.append(str(scenario))
                continue
            self._since[str(scenario)] = {"since": since, "accepted_at": at or since}
        if bad or not isinstance(doc, dict):
            log.warning(
                "ignored accepted baselines that are not a Unix time in seconds (2000..2100)",
                path=str(path),
                scenarios=bad or None,
            )

    def since(self, scenario: str) -> float | None:
        """The start of ``scenario``'s accepted baseline, if one was accepted."""
        entry = self._since.get(scenario)
        return None if entry is None else entry["since"]

    def accept(self, scenario: str, since: float, at: float) -> None:
        """Keep ``since`` for ``scenario`` (CannotAccept when the file cannot be written)."""
        updated = {**self._since, scenario: {"since": since, "accepted_at": at}}
        try:
            write_atomically(self.path, orjson.dumps(updated, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            raise CannotAccept(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._since = updated


def regression_streak(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The runs of the current regression, most recent first: the latest records that regressed."""
    streak: list[Mapping[str, Any]] = []
    for doc in records:
        regression = doc.get("regression")
        if not isinstance(regression, Mapping) or regression.get("state") != "regressed":
            break
        if number(doc.get("started_at")) is None:
            break
        streak.append(doc)
    return streak


class RegressionJudge:
    """Judges records against the history and exports the result; one per ``serve``."""

    def __init__(
        self,
        history: RunHistory,
        recorder: Recorder,
        accepted: AcceptedBaselines | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history = history
        self.recorder = recorder
        self.accepted = accepted or AcceptedBaselines(accepted_file(history.path))
        self._clock = clock
        # The series each scenario set last time, so a metric no longer judged goes back to 0.
        self._exported: dict[str, set[tuple[str, str]]] = {}
        self._rejected: set[bytes] = set()  # bad records already logged and counted
        # What choosing reads of each history record seen (None: a bad record), so a window
        # parses and checks only the new records and the few it is compared with, not a
        # week of them (10 MiB of history: 5-25 ms of the loop at every window, per scenario).
        self._views: dict[HistoryEntry, dict[str, Any] | None] = {}

    def judge(self, doc: dict[str, Any], policy: BaselinePolicy = DEFAULT_POLICY) -> None:
        """Add ``regression`` to a record about to enter the history, and export it."""
        scenario = str(doc.get("scenario"))
        lost = False
        try:
            past, entry_of = self._past(scenario) if policy.enabled else ([], {})
            since = self.accepted.since(scenario)
            views = choose_references(doc, past, policy, since, checked=True)
            chosen, anchor, trend = _records(views, entry_of)
            report = judge_against(doc, chosen, policy, anchor, trend)
            if report.state == "no_baseline" and _was_compared(doc, past, since):
                lost = True
                report = replace(report, lost=True)
        except Exception as exc:  # a bug here must never cost the record or page anyone
            log.error("cannot judge the run against its baseline", scenario=scenario, exc_info=exc)
            report = RegressionReport("no_baseline", 0, policy.min_runs)
        doc["regression"] = report.doc()
        self._export(scenario, report)
        compared = report.state == "regressed" or (
            report.state == "ok" and any(not f.untested for f in report.findings)
        )
        if lost:
            log.warning("baseline lost", scenario=scenario, headline=report.headline())
        if compared or lost or report.state == "ok":
            # Absent while a scenario is young (no baseline yet): nothing was expected.
            self.recorder.baseline_compared(scenario, compared)

    def _past(self, scenario: str) -> tuple[list[dict[str, Any]], dict[int, HistoryEntry]]:
        """The sound records of ``scenario`` as choosing sees them (most recent first), and the
        record each view stands for; a record is parsed and checked once, when first seen."""
        views: list[dict[str, Any]] = []
        entry_of: dict[int, HistoryEntry] = {}
        for entry in self.history.entries(scenario, _LOOKBACK):
            try:
                view = self._views[entry]
            except KeyError:
                record = entry.doc()
                view = self._views[entry] = (
                    selection_view(record) if self._sound(scenario, record) else None
                )
            if view is not None:
                views.append(view)
                entry_of[id(view)] = entry
        if len(self._views) > 2 * len(self.history) + 64:  # records dropped since: forget them
            kept = set(self.history.entries_all())
            self._views = {e: v for e, v in self._views.items() if e in kept}
        return views, entry_of

    def _sound(self, scenario: str, record: Mapping[str, Any]) -> bool:
        """A history record fit to be compared; a bad one is logged and counted once."""
        problem = record_problem(record)
        if problem is None:
            return True
        key = orjson.dumps(
            [record.get("run_id"), record.get("window"), record.get("ended_at")], default=repr
        )
        if key not in self._rejected:
            self._rejected.add(key)
            self.recorder.baseline_record_skipped(scenario)
            log.warning(
                "skipped a bad run history record",
                scenario=scenario,
                run_id=str(record.get("run_id")),
                problem=problem,
            )
        return False

    def accept(self, scenario: str, policy: BaselinePolicy = DEFAULT_POLICY) -> dict[str, Any]:
        """Accept the runs since the current regression began as ``scenario``'s new baseline.

        Raises CannotAccept (nothing changed) when the acceptance cannot be kept.
        """
        now = self._clock()
        streak = regression_streak(self.history.recent(scenario, _LOOKBACK))
        # The streak is most recent first, each with a numeric stamp: its last run began it.
        since = float(streak[-1]["started_at"]) if streak else now
        self.accepted.accept(scenario, since, now)
        runs = min(len(streak), policy.runs)
        cleared = self._exported.get(scenario, set())
        self.recorder.regression_judged(scenario, runs, {}, cleared)
        if streak:
            said = (
                f"the {len(streak)} regressed run(s) since {_when(since)} are the new baseline"
                + ("" if runs >= policy.min_runs else f"; {policy.min_runs} needed to judge")
            )
        else:
            said = "the last run did not regress: the baseline starts again from the next run"
        log.warning("baseline accepted", scenario=scenario, since=since, runs=len(streak))
        return {
            "scenario": scenario,
            "action": "accept-baseline",
            "since": since,
            "accepted_runs": len(streak),
            "baseline": said,
        }

    def _export(self, scenario: str, report: RegressionReport) -> None:
        now = {
            (f.endpoint, f.metric): (_in_base_unit(f.metric, f.baseline), f.regressed)
            for f in report.findings
        }
        cleared = self._exported.get(scenario, set()) - now.keys()
        self.recorder.regression_judged(scenario, report.runs, now, cleared)
        self._exported[scenario] = set(now)


def _records(
    chosen: Sequence[Sequence[Mapping[str, Any]]], entry_of: Mapping[int, HistoryEntry]
) -> list[list[dict[str, Any]]]:
    """The whole records behind each list of views, each record parsed once."""
    parsed: dict[int, dict[str, Any]] = {}
    out = []
    for views in chosen:
        records = []
        for view in views:
            key = id(view)
            if key not in parsed:
                parsed[key] = entry_of[key].doc()
            records.append(parsed[key])
        out.append(records)
    return out


def _was_compared(
    doc: Mapping[str, Any], past: Sequence[Mapping[str, Any]], since: float | None
) -> bool:
    """Whether an earlier run of this setup (since the last acceptance) was compared with a
    baseline: then having none now means the baseline was lost, not that it is young."""
    for record in past:
        regression = record.get("regression")
        if record.get("fingerprint") != doc.get("fingerprint"):
            continue
        if since is not None and float(record["started_at"]) < since:
            continue
        if isinstance(regression, Mapping) and regression.get("state") in ("ok", "regressed"):
            return True
    return False


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))
