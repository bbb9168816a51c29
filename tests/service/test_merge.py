"""How the ``--workers`` front merges its workers' answers: pure functions, no process."""

from __future__ import annotations

from typing import Any

import pytest

from loadsvc.runner import Shard
from loadsvc.service import merge
from loadsvc.service.merge import Answer, NoWorkerAnswered
from loadsvc.service.workers import stopped_cleanly, worker_history_file, worker_shard


def scenario(name: str, users: int, **flags: bool) -> dict[str, Any]:
    """A worker's status entry of one scenario."""
    return {
        "name": name,
        "users": users,
        "running": False,
        "stopping": False,
        "held": False,
    } | flags


def status_doc(*scenarios: dict[str, Any]) -> dict[str, Any]:
    """A worker's ``/api/status`` document."""
    return {
        "service": {"config": "c.yaml", "shard": "0/2", "ready": True},
        "scenarios": list(scenarios),
    }


def test_readiness_needs_every_worker_ready_and_names_the_first_that_is_not() -> None:
    """Ready only when all answered 200; else the first failing worker with its reason."""
    ok: Answer = (200, {"status": "ready"})
    assert merge.merge_readiness([0, 1], [ok, ok]) == (True, "")
    assert merge.merge_readiness([0, 1], [ok, None]) == (False, "worker 1: not started")
    down: Answer = (503, {"status": "not ready", "reason": "shutting down"})
    assert merge.merge_readiness([0, 1], [down, None]) == (False, "worker 0: shutting down")
    assert merge.merge_readiness([0], [(503, "odd")]) == (False, "worker 0: odd")


def test_status_sums_users_ors_flags_and_adds_the_front_facts() -> None:
    """Users are summed per scenario, flags true if any worker's is, the service part is the front's."""
    w0 = status_doc(scenario("a", 8, running=True), scenario("b", 0))
    w1 = status_doc(scenario("a", 7), scenario("b", 0, held=True))
    workers = [{"index": 0}, {"index": 1}]
    doc = merge.merge_status(
        [(200, w0), (200, w1)], shard="0/1", started_at=0.0, ready=True, workers=workers
    )
    assert [(s["name"], s["users"], s["running"], s["held"]) for s in doc["scenarios"]] == [
        ("a", 15, True, False),
        ("b", 0, False, True),
    ]
    assert doc["service"] == {
        "config": "c.yaml",
        "shard": "0/1",
        "ready": True,
        "started_at": "1970-01-01T00:00:00+00:00",
        "workers": workers,
    }
    assert w0["scenarios"][0]["users"] == 8  # the workers' documents are left as they were


def test_status_skips_workers_that_did_not_answer_200() -> None:
    """A silent or failing worker adds nothing; with none answering the document is empty."""
    w1 = status_doc(scenario("a", 7))
    doc = merge.merge_status(
        [None, (200, w1)], shard="0/1", started_at=0.0, ready=False, workers=[]
    )
    assert doc["scenarios"][0]["users"] == 7 and doc["service"]["ready"] is False
    empty = merge.merge_status(
        [None, (500, {})], shard="1/3", started_at=0.0, ready=False, workers=[]
    )
    assert empty["scenarios"] == [] and empty["service"]["shard"] == "1/3"


def test_status_shows_the_worst_workers_generator() -> None:
    """One busy worker makes the replica's generator busy, whatever the first worker says."""
    quiet = {"busy": False, "loop_lag_p99_ms": 3.0, "loop_lag_limit_ms": 10.0, "span_s": 10.0}
    busy = {"busy": True, "loop_lag_p99_ms": 12.0, "loop_lag_limit_ms": 10.0, "span_s": 10.0}
    w0 = {**status_doc(scenario("a", 1)), "generator": quiet}
    w1 = {**status_doc(scenario("a", 1)), "generator": busy}
    doc = merge.merge_status(
        [(200, w0), (200, w1)], shard="0/1", started_at=0.0, ready=True, workers=[]
    )
    assert doc["generator"] == busy


def test_runs_are_merged_newest_first_and_cut_at_the_limit() -> None:
    """Every worker's runs sorted by ended_at descending, at most ``limit`` of them."""
    w0 = {"runs": [{"run_id": "a", "ended_at": 30.0}, {"run_id": "c", "ended_at": 10.0}]}
    w1 = {"runs": [{"run_id": "b", "ended_at": 20.0}, {"run_id": "d", "ended_at": None}]}
    answers: list[Answer] = [(200, w0), (200, w1)]
    assert [r["run_id"] for r in merge.merge_runs(answers, 50)] == ["a", "b", "c", "d"]
    assert [r["run_id"] for r in merge.merge_runs(answers, 2)] == ["a", "b"]
    assert [r["run_id"] for r in merge.merge_runs([None, (200, w1)], 50)] == ["b", "d"]


def test_runs_with_no_worker_answering_is_an_error() -> None:
    """Not one worker answered: NoWorkerAnswered, not an empty list that looks like no runs."""
    with pytest.raises(NoWorkerAnswered, match="no worker answered"):
        merge.merge_runs([None, None], 50)


def test_control_is_accepted_when_any_worker_accepts_and_lists_every_answer() -> None:
    """202 if any worker took it; else the first answer's status; every worker's answer listed."""
    took: Answer = (202, {"scenario": "a", "action": "run", "run_id": "r1"})
    busy: Answer = (409, {"error": "a is already running"})
    status, body = merge.merge_control([0, 1], [busy, took])
    assert status == 202 and body["error"] == "a is already running"
    assert body["workers"] == [
        {"index": 0, "status": 409, "answer": {"error": "a is already running"}},
        {"index": 1, "status": 202, "answer": took[1]},
    ]
    status, body = merge.merge_control([0, 1], [None, busy])
    assert status == 409 and body["workers"][0] == {"index": 0, "status": None, "answer": None}
    with pytest.raises(NoWorkerAnswered):
        merge.merge_control([0, 1], [None, None])


def test_worker_shards_partition_the_replica_and_histories_are_apart() -> None:
    """Worker k of replica i/n runs i*N+k of n*N and keeps its own history file."""
    assert [str(worker_shard(Shard(1, 3), 2, k)) for k in range(2)] == ["2/6", "3/6"]
    assert worker_history_file("/var/lib/runs.jsonl", 1) == "/var/lib/runs.w1.jsonl"


def test_a_worker_stopped_while_starting_python_counts_as_stopped() -> None:
    """Exit 0 or death by the SIGTERM the front sent are clean stops; anything else is not."""
    assert stopped_cleanly([0, -15]) and stopped_cleanly([])
    assert not stopped_cleanly([0, 1]) and not stopped_cleanly([-9]) and not stopped_cleanly([None])


def test_status_shows_the_worst_live_judgement_of_any_worker() -> None:
    """Worker 0's share passes live, worker 1's fails: the merged scenario says failed."""
    w0 = status_doc({**scenario("a", 8, running=True), "live": {"result": "passed"}})
    w1 = status_doc({**scenario("a", 7, running=True), "live": {"result": "failed"}})
    doc = merge.merge_status(
        [(200, w0), (200, w1)], shard="0/1", started_at=0.0, ready=True, workers=[]
    )
    assert doc["scenarios"][0]["live"] == {"result": "failed"}
