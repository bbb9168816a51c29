"""Choosing a baseline: the comparable past runs of a scenario, from history or from files.

Comparable means: the same scenario with the same *fingerprint* (a hash of what
is measured and how: user groups, shape, thresholds, planned duration, verdict
window), a run that passed, was judged on data and did not itself regress.
A changed scenario gets a new fingerprint and so starts a new baseline.
Every record is checked (``validate.record_problem``) before it counts:
a bad one is skipped, so a corrupt history means fewer runs, never a false
alarm and never a comparison switched off. A run whose generator was busy
(``loadsvc.lag.is_busy``) never enters a baseline: its latencies carry the
generator's own queueing. Scheduled runs are compared with the last N comparable runs;
continuous scenarios with their last N verdict windows, or with the same
window of previous days (``BaselinePolicy.same_time_of_day``).

The *anchor* (:func:`choose_anchor`) is the oldest comparable runs within
``ANCHOR_SPAN_S`` (or since the last acceptance): a reference that moves over
days or on accept, never window by window, so a slow drift cannot drag it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from loadsvc.baseline.findings import number
from loadsvc.baseline.regression import DEFAULT_POLICY
from loadsvc.baseline.validate import record_problem
from loadsvc.config.spec import BaselinePolicy, ScenarioSpec
from loadsvc.lag import is_busy

_DAY_S = 86_400.0
# How far back the anchored reference reaches: it moves over days, not windows.
ANCHOR_SPAN_S = 7 * _DAY_S
# Recent comparable runs whose excesses over the anchor are summed (the drift CUSUM).
TREND_RUNS = 20


def fingerprint(spec: ScenarioSpec, planned_s: float | None) -> str:
    """What makes two runs comparable, as 12 hex digits (name, description, schedule left out)."""
    window = spec.schedule.verdict_every_s if spec.schedule.kind == "continuous" else None
    measured = repr((spec.shape, spec.users, spec.thresholds, planned_s, window))
    return hashlib.sha256(measured.encode()).hexdigest()[:12]


def comparable(
    doc: Any,
    scenario: str,
    print_: str | None,
    accepted_since: float | None = None,
    checked: bool = False,
) -> bool:
    """A past record that may enter the baseline of ``scenario`` with fingerprint ``print_``.

    With ``accepted_since`` (someone accepted a new baseline: the runs from then on are
    the new normal) only runs started from then on count, regressed ones included.
    ``checked``: the caller already left out every record with a ``record_problem``.
    """
    if not isinstance(doc, Mapping) or doc.get("scenario") != scenario:
        return False
    if print_ is not None and doc.get("fingerprint") != print_:
        return False
    if doc.get("result") != "passed" or doc.get("passed") is not True:
        return False  # failed, no_data, generator-bound, crashed: not what "normal" looks like
    if busy(doc):
        return False  # passed, but its latencies carry the generator's own queueing
    if not checked and record_problem(doc) is not None:
        return False  # a bad record never enters a baseline, nor stops the others
    started = float(doc["started_at"])
    if accepted_since is not None:
        return started >= accepted_since
    regression = doc.get("regression")
    # A regressed run must not drag the baseline towards itself (until it is accepted).
    return not (isinstance(regression, Mapping) and regression.get("state") == "regressed")


# Every field of a record that choosing reads (:func:`comparable`, :func:`choose_references`,
# same time of day, a lost baseline): what :func:`selection_view` keeps. A field read there
# and missing here would be read as absent; tests/test_baseline.py holds the two together.
SELECTION_FIELDS = (
    "scenario", "fingerprint", "result", "passed", "loop_lag_p99_ms", "loop_lag_limit_ms",
    "started_at", "ended_at", "run_id", "window",
)  # fmt: skip


def selection_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What choosing a baseline reads of a (checked) record: a few scalars, so a long history
    can be chosen from without keeping or parsing its records again (serve's judge)."""
    view = {key: doc[key] for key in SELECTION_FIELDS if key in doc}
    regression = doc.get("regression")
    if isinstance(regression, Mapping):
        view["regression"] = {"state": regression.get("state")}
    return view


def busy(doc: Mapping[str, Any]) -> bool:
    """The run's generator was busy (its loop lag p99 over its trust limit), per loadsvc.lag."""
    lag, limit = number(doc.get("loop_lag_p99_ms")), number(doc.get("loop_lag_limit_ms"))
    return limit is not None and is_busy(None if lag is None else lag / 1000, limit / 1000)


def _candidates(
    current: Mapping[str, Any],
    past: Iterable[Any],
    accepted_since: float | None,
    checked: bool = False,
) -> list[Mapping[str, Any]]:
    scenario = current.get("scenario")
    print_ = current.get("fingerprint")
    if not isinstance(scenario, str):
        return []
    run_id = current.get("run_id")
    return [
        d
        for d in past
        if comparable(
            d, scenario, print_ if isinstance(print_, str) else None, accepted_since, checked
        )
        and not (d.get("run_id") == run_id and d.get("window") == current.get("window"))
    ]


def choose_anchor(
    current: Mapping[str, Any],
    past: Iterable[Any],
    policy: BaselinePolicy = DEFAULT_POLICY,
    accepted_since: float | None = None,
) -> list[Mapping[str, Any]]:
    """The anchored reference of ``current``: the oldest ``policy.runs`` comparable runs that
    ended within ``ANCHOR_SPAN_S`` of it (or since ``accepted_since``); most recent first.

    None for ``same_time_of_day``: that baseline already reaches back over days.
    """
    return choose_references(current, past, policy, accepted_since)[1]


def choose_trend(
    current: Mapping[str, Any],
    past: Iterable[Any],
    policy: BaselinePolicy = DEFAULT_POLICY,
    accepted_since: float | None = None,
) -> list[Mapping[str, Any]]:
    """The last ``TREND_RUNS`` comparable runs of ``current`` (most recent first): the drift sum
    against the anchor runs over them. None for ``same_time_of_day``."""
    return choose_references(current, past, policy, accepted_since)[2]


def choose_baseline(
    current: Mapping[str, Any],
    past: Iterable[Any],
    policy: BaselinePolicy = DEFAULT_POLICY,
    accepted_since: float | None = None,
) -> list[Mapping[str, Any]]:
    """The baseline runs of ``current`` among ``past`` (most recent first), at most ``policy.runs``.

    ``accepted_since``: a new baseline was accepted from this time on (see :func:`comparable`).
    """
    return choose_references(current, past, policy, accepted_since)[0]


def choose_references(
    current: Mapping[str, Any],
    past: Iterable[Any],
    policy: BaselinePolicy = DEFAULT_POLICY,
    accepted_since: float | None = None,
    checked: bool = False,
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The baseline, the anchor and the trend runs of ``current``, each record checked once
    (``checked``: already, by the caller)."""
    candidates = _candidates(current, past, accepted_since, checked)
    if policy.same_time_of_day:
        return _same_time_of_day(current, candidates, policy), [], []
    now = number(current.get("ended_at"))
    within = (
        []
        if now is None
        else [d for d in candidates if float(d["ended_at"]) >= now - ANCHOR_SPAN_S]
    )
    return candidates[: policy.runs], within[-policy.runs :], candidates[:TREND_RUNS]


def _same_time_of_day(
    current: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]], policy: BaselinePolicy
) -> list[Mapping[str, Any]]:
    """One window per previous day, the nearest to the current one's time of day."""
    now = number(current.get("ended_at"))
    if now is None:
        return []
    best: dict[int, tuple[float, Mapping[str, Any]]] = {}
    for doc in candidates:
        ended = number(doc.get("ended_at"))
        if ended is None or ended >= now - _DAY_S / 2:
            continue  # today's windows are not "the same window of a previous day"
        days = round((now - ended) / _DAY_S)
        off = abs(now - days * _DAY_S - ended)
        if off <= policy.time_of_day_slack_s and (days not in best or off < best[days][0]):
            best[days] = (off, doc)
    return [best[d][1] for d in sorted(best)][: policy.runs]


class UnreadableSummary(ValueError):
    """A summary file that is not a readable summary JSON document."""


# A summary is a few hundred kB at most; past this a file is not one (e.g. a link to /dev/zero).
MAX_SUMMARY_BYTES = 64 * 1024 * 1024


def read_summary(path: Path) -> dict[str, Any]:
    """One summary JSON document written by ``loadsvc run --summary-json``, checked field by
    field (:func:`loadsvc.baseline.validate.record_problem`); UnreadableSummary names the
    file and the first bad field."""
    try:
        if not path.is_file():
            raise UnreadableSummary(f"{path}: not a regular file")
        with path.open("rb") as handle:
            raw = handle.read(MAX_SUMMARY_BYTES + 1)
        if len(raw) > MAX_SUMMARY_BYTES:
            raise UnreadableSummary(f"{path}: larger than {MAX_SUMMARY_BYTES} bytes")
        doc = orjson.loads(raw)
    except OSError as exc:
        raise UnreadableSummary(f"{path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise UnreadableSummary(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("endpoints"), list):
        raise UnreadableSummary(f"{path}: not a loadsvc run summary")
    if (problem := record_problem(doc)) is not None:
        raise UnreadableSummary(f"{path}: {problem}")
    return doc


def read_summaries(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The summaries in a file or folder (``*.json``), newest first, and what was skipped, why."""
    if not path.is_dir():
        return [read_summary(path)], []
    docs: list[dict[str, Any]] = []
    skipped: list[str] = []
    for file in sorted(path.glob("*.json")):
        try:
            docs.append(read_summary(file))
        except UnreadableSummary as exc:
            skipped.append(str(exc))
    docs.sort(key=lambda d: number(d.get("started_at")) or 0.0, reverse=True)
    return docs, skipped
