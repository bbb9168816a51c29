"""serve's regression judge: records judged against the run history, exported as gauges."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from loadsvc.baseline.select import TREND_RUNS
from loadsvc.config.spec import BaselinePolicy, Tolerance
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.service.history import HistoryEntry, RunHistory
from loadsvc.service.regressions import CannotAccept, RegressionJudge, accepted_file
from tests.test_baseline import T0, endpoint, healthy, summary


def judge_in(path: Path) -> tuple[RegressionJudge, CollectorRegistry]:
    """A judge over the history file at ``path`` (read as serve reads it at start-up)."""
    registry = CollectorRegistry()

    def clock() -> float:
        return T0 + 40 * 86_400

    history = RunHistory(path, max_bytes=10_000_000, max_age_s=1e9, clock=clock)
    judge = RegressionJudge(history, Recorder(create_metrics(registry)), clock=clock)
    return judge, registry


def gauge(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """One sample's value, None when the series does not exist."""
    return registry.get_sample_value(name, labels)


def record(judge: RegressionJudge, doc: dict[str, Any]) -> dict[str, Any]:
    """What RunRecords does with a finished run: judge it, then append it."""
    judge.judge(doc)
    judge.history.append(doc)
    return doc


def test_healthy_history_then_a_slowdown_pages_and_a_recovery_resolves(tmp_path: Path) -> None:
    """3 healthy runs: no baseline, then ok; +30 ms sets regression_detected 1; healthy again: 0."""
    rng = random.Random(1)
    judge, registry = judge_in(tmp_path / "runs.jsonl")
    first = [record(judge, summary([endpoint(healthy(rng))], d)) for d in range(3)]
    assert [d["regression"]["state"] for d in first] == ["no_baseline"] * 3
    ok = record(judge, summary([endpoint(healthy(rng))], 3))
    assert ok["regression"]["state"] == "ok"
    labels = {"scenario": "s", "endpoint": "/api/a", "metric": "p95"}
    assert gauge(registry, "loadsvc_regression_detected", **labels) == 0
    assert 0.002 < (gauge(registry, "loadsvc_baseline_value", **labels) or 0) < 0.008
    slow = record(judge, summary([endpoint([v + 0.03 for v in healthy(rng)])], 4))
    assert slow["regression"]["state"] == "regressed"
    assert slow["regression"]["headline"].startswith("REGRESSION: /api/a ")
    assert gauge(registry, "loadsvc_regression_detected", **labels) == 1
    assert gauge(registry, "loadsvc_baseline_runs", scenario="s") == 4
    back = record(judge, summary([endpoint(healthy(rng))], 5))
    assert back["regression"]["state"] == "ok"  # the regressed run did not enter the baseline
    assert gauge(registry, "loadsvc_regression_detected", **labels) == 0


def test_baselines_survive_a_restart_and_a_torn_history_only_means_fewer_runs(
    tmp_path: Path,
) -> None:
    """A new process reads the baseline from the file; corrupt lines are skipped, never alarm."""
    rng = random.Random(2)
    path = tmp_path / "runs.jsonl"
    judge, _ = judge_in(path)
    for d in range(3):
        record(judge, summary([endpoint(healthy(rng))], d))
    with path.open("ab") as f:
        f.write(b'{"scenario": "s", "result": "passed", "passed": true, "endpoints": [{"endp\n')
        f.write(b'["not", "a", "record"]\n')
    restarted, _ = judge_in(path)
    slow = record(restarted, summary([endpoint([v + 0.03 for v in healthy(rng)])], 3))
    assert slow["regression"]["state"] == "regressed" and slow["regression"]["runs"] == 3
    path.write_bytes(b"".join(line for line in path.read_bytes().splitlines(True)[1:]))
    fewer, _ = judge_in(path)
    again = record(fewer, summary([endpoint([v + 0.03 for v in healthy(rng)])], 4))
    assert again["regression"]["state"] == "no_baseline"  # 2 healthy runs left (+1 regressed)


def test_a_changed_scenario_starts_a_new_baseline(tmp_path: Path) -> None:
    """Records of another fingerprint are not comparable: the changed scenario has no baseline."""
    rng = random.Random(3)
    judge, registry = judge_in(tmp_path / "runs.jsonl")
    for d in range(5):
        record(judge, summary([endpoint(healthy(rng))], d))
    changed = record(
        judge, summary([endpoint([v + 0.03 for v in healthy(rng)])], 5, fingerprint="f2")
    )
    assert changed["regression"]["state"] == "no_baseline"
    assert gauge(registry, "loadsvc_baseline_runs", scenario="s") == 0


def slower(rng: random.Random, by_s: float) -> list[float]:
    """A healthy run's latencies, each ``by_s`` slower."""
    return [v + by_s for v in healthy(rng)]


def test_the_scenarios_own_tolerance_decides(tmp_path: Path) -> None:
    """+8 ms is within the built-in +10 ms margin, beyond a scenario's +5 ms; off: not judged."""
    rng = random.Random(4)
    judge, registry = judge_in(tmp_path / "runs.jsonl")
    for d in range(4):
        record(judge, summary([endpoint(healthy(rng))], d))
    run = summary([endpoint(slower(rng, 0.008))], 4)
    judge.judge(dict(run))
    assert gauge(registry, "loadsvc_regression_detected", **P95) == 0
    tight = replace(BaselinePolicy(), latency=Tolerance(0.5, 5.0))
    judged = dict(run)
    judge.judge(judged, tight)
    assert judged["regression"]["state"] == "regressed"
    assert "beyond +50 % and +5 ms" in judged["regression"]["headline"]
    assert gauge(registry, "loadsvc_regression_detected", **P95) == 1
    off = dict(run)
    judge.judge(off, replace(tight, enabled=False))
    assert off["regression"]["state"] == "off"
    assert off["regression"]["findings"] == []
    assert gauge(registry, "loadsvc_regression_detected", **P95) == 0  # no finding: cleared


P95 = {"scenario": "s", "endpoint": "/api/a", "metric": "p95"}


def test_accepting_makes_the_regressed_runs_the_new_baseline(tmp_path: Path) -> None:
    """Two slow runs regress; accepting clears the series at once, and from then on the slow
    level is normal (with 3 runs needed: no baseline until a third) and a return to the old
    level is no regression either (it is faster)."""
    rng = random.Random(5)
    path = tmp_path / "runs.jsonl"
    judge, registry = judge_in(path)
    for d in range(4):
        record(judge, summary([endpoint(healthy(rng))], d))
    slow = [record(judge, summary([endpoint(slower(rng, 0.03))], d)) for d in (4, 5)]
    assert [d["regression"]["state"] for d in slow] == ["regressed", "regressed"]
    assert gauge(registry, "loadsvc_regression_detected", **P95) == 1

    answer = judge.accept("s")
    assert answer["accepted_runs"] == 2 and answer["since"] == slow[0]["started_at"]
    assert "2 regressed run(s) since 2026-11-27" in answer["baseline"]
    assert "3 needed" in answer["baseline"]
    assert gauge(registry, "loadsvc_regression_detected", **P95) == 0
    assert gauge(registry, "loadsvc_baseline_runs", scenario="s") == 2

    restarted, registry = judge_in(path)  # the acceptance is kept beside the history
    third = record(restarted, summary([endpoint(slower(rng, 0.03))], 6))
    assert third["regression"]["state"] == "no_baseline"  # 2 accepted runs, 3 needed
    fourth = record(restarted, summary([endpoint(slower(rng, 0.03))], 7))
    assert fourth["regression"]["state"] == "ok" and fourth["regression"]["runs"] == 3
    worse = record(restarted, summary([endpoint(slower(rng, 0.09))], 8))
    assert worse["regression"]["state"] == "regressed"  # judged against the accepted level


def test_accepting_without_a_regression_starts_the_baseline_again(tmp_path: Path) -> None:
    """The last run did not regress: the baseline restarts from the next run."""
    rng = random.Random(6)
    judge, _ = judge_in(tmp_path / "runs.jsonl")
    for d in range(4):
        record(judge, summary([endpoint(healthy(rng))], d))
    answer = judge.accept("s")
    assert answer["accepted_runs"] == 0 and "starts again" in answer["baseline"]
    later = record(judge, summary([endpoint(slower(rng, 0.03))], 60))  # started after "now"
    assert later["regression"]["state"] == "no_baseline"


def test_an_acceptance_that_cannot_be_kept_changes_nothing(tmp_path: Path) -> None:
    """An unwritable file: CannotAccept names it, the series stay; a corrupt file: none apply."""
    rng = random.Random(7)
    path = tmp_path / "runs.jsonl"
    judge, registry = judge_in(path)
    for d in range(4):
        record(judge, summary([endpoint(healthy(rng))], d))
    record(judge, summary([endpoint(slower(rng, 0.03))], 4))
    accepted_file(path).mkdir()  # a directory where the file should go
    with pytest.raises(CannotAccept, match=r"runs\.jsonl\.baselines\.json"):
        judge.accept("s")
    assert gauge(registry, "loadsvc_regression_detected", **P95) == 1
    accepted_file(path).rmdir()
    accepted_file(path).write_bytes(b'{"s": {"since": ')
    reread, _ = judge_in(path)
    again = record(reread, summary([endpoint(slower(rng, 0.03))], 5))
    assert again["regression"]["state"] == "regressed"  # the old baseline, nothing broken


def test_a_history_line_in_milliseconds_is_skipped_counted_and_detection_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's poisoned line (started_at in ms) used to crash span_of and leave every window
    without a baseline; now it is skipped, logged and counted once, and +27 ms still regresses."""
    rng = random.Random(20)
    path = tmp_path / "runs.jsonl"
    judge, _ = judge_in(path)
    for d in range(5):
        record(judge, summary([endpoint(healthy(rng))], d))
    poisoned = summary([endpoint(healthy(rng))], 5, regression={"state": "ok"})
    poisoned["started_at"] *= 1000
    judge.history.append(poisoned)
    restarted, registry = judge_in(path)
    for day in (6, 7):
        slow = record(restarted, summary([endpoint(slower(rng, 0.027))], day))
        assert slow["regression"]["state"] == "regressed", slow["regression"]["headline"]
    assert gauge(registry, "loadsvc_baseline_records_skipped_total", scenario="s") == 1
    assert capsys.readouterr().out.count("skipped a bad run history record") == 1


def test_losing_a_baseline_that_existed_is_said_and_exported(tmp_path: Path) -> None:
    """A history cut down to 2 compared runs: BASELINE LOST and loadsvc_baseline_compared 0; a
    young scenario (never compared) exports nothing; comparing again sets 1."""
    rng = random.Random(21)
    path = tmp_path / "runs.jsonl"
    judge, registry = judge_in(path)
    for d in range(3):
        record(judge, summary([endpoint(healthy(rng))], d))
    assert gauge(registry, "loadsvc_baseline_compared", scenario="s") is None  # young
    for d in range(3, 6):
        record(judge, summary([endpoint(healthy(rng))], d))
    assert gauge(registry, "loadsvc_baseline_compared", scenario="s") == 1
    path.write_bytes(b"".join(path.read_bytes().splitlines(True)[-2:]))  # a volume restored badly
    cut, registry = judge_in(path)
    lost = record(cut, summary([endpoint(healthy(rng))], 6))
    assert lost["regression"]["state"] == "no_baseline" and lost["regression"]["lost"] is True
    assert (
        lost["regression"]["headline"] == "BASELINE LOST: no baseline yet (2 of 3 comparable runs)"
    )
    assert gauge(registry, "loadsvc_baseline_compared", scenario="s") == 0
    record(cut, summary([endpoint(healthy(rng))], 7))
    assert gauge(registry, "loadsvc_baseline_compared", scenario="s") == 1


def test_an_absurd_acceptance_time_is_ignored_not_obeyed(tmp_path: Path) -> None:
    """since: 1e308 in HISTORY.baselines.json used to leave the scenario without a baseline for
    good; it is ignored (logged) and +30 ms still regresses."""
    rng = random.Random(22)
    path = tmp_path / "runs.jsonl"
    judge, _ = judge_in(path)
    for d in range(4):
        record(judge, summary([endpoint(healthy(rng))], d))
    accepted_file(path).write_text('{"s": {"since": 1e308, "accepted_at": 1e308}}')
    restarted, _ = judge_in(path)
    assert restarted.accepted.since("s") is None
    slow = record(restarted, summary([endpoint(slower(rng, 0.03))], 4))
    assert slow["regression"]["state"] == "regressed"


def test_a_steady_drift_pages_before_it_totals_30ms_in_serve(tmp_path: Path) -> None:
    """serve's judge over its own history: 40 ms windows growing +3 ms each set
    regression_detected before +30 ms, against the anchored baseline."""
    rng = random.Random(23)
    judge, registry = judge_in(tmp_path / "runs.jsonl")
    alarm = None
    for i in range(20):
        drift = max(0, i - 6) * 0.003
        doc = summary([endpoint([v + drift for v in healthy(rng, median_s=0.040)])], 0)
        doc.update(run_id="w", window=i, started_at=T0 + 300 * i, ended_at=T0 + 300 * (i + 1))
        record(judge, doc)
        if doc["regression"]["state"] == "regressed":
            alarm = drift
            break
    assert alarm is not None and alarm < 0.030
    assert "vs anchored baseline" in doc["regression"]["headline"]
    assert any(
        gauge(registry, "loadsvc_regression_detected", **{**P95, "metric": m}) == 1
        for m in ("p50", "p95", "p99")
    )


def test_a_window_parses_only_the_new_records_and_judges_as_a_fresh_judge_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A week of windows is not parsed again at every window (at 10 MiB of history that was
    5-25 ms of the loop per scenario, bench/judge_cost.py): once seen, a record is parsed
    again only if chosen. The verdicts are those of a judge that reads the history afresh."""
    rng = random.Random(31)
    judge, _ = judge_in(tmp_path / "runs.jsonl")

    def window(i: int, slow_s: float = 0.0) -> dict[str, Any]:
        doc = summary([endpoint([v + slow_s for v in healthy(rng, n=200)])], 0)
        doc.update(run_id="w", window=i, started_at=T0 + 300 * i, ended_at=T0 + 300 * (i + 1))
        if i % 7 == 3:
            doc["fingerprint"] = "f-other"  # another setup's records, never chosen
        return doc

    for i in range(150):
        record(judge, window(i))
    parsed: list[HistoryEntry] = []
    original = HistoryEntry.doc

    def counted(entry: HistoryEntry) -> dict[str, Any]:
        parsed.append(entry)
        return original(entry)

    monkeypatch.setattr(HistoryEntry, "doc", counted)
    for i, slow_s in ((150, 0.0), (151, 0.03), (152, 0.0)):
        doc = window(i, slow_s)
        judge.judge(doc)
        fresh, _ = judge_in(tmp_path / "runs.jsonl")
        again = {k: v for k, v in doc.items() if k != "regression"}
        fresh.judge(again)
        assert doc["regression"] == again["regression"]
        parsed.clear()
        judge.judge({k: v for k, v in doc.items() if k != "regression"})
        policy = BaselinePolicy()
        assert 0 < len(parsed) <= 2 * policy.runs + TREND_RUNS  # of 150 records
        judge.history.append(doc)
    states = [d["regression"]["state"] for d in judge.history.recent("s", 3)]
    assert states == ["ok", "regressed", "ok"]
