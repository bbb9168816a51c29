"""serve's regression judge: records judged against the run history, exported as gauges."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.service.history import RunHistory
from loadsvc.service.regressions import RegressionJudge
from tests.test_baseline import T0, endpoint, healthy, summary


def judge_in(path: Path) -> tuple[RegressionJudge, CollectorRegistry]:
    """A judge over the history file at ``path`` (read as serve reads it at start-up)."""
    registry = CollectorRegistry()
    history = RunHistory(path, max_bytes=10_000_000, max_age_s=1e9, clock=lambda: T0 + 40 * 86_400)
    return RegressionJudge(history, Recorder(create_metrics(registry))), registry


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
