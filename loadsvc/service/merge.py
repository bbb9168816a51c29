"""How the ``serve --workers N`` front merges its workers' answers: pure functions, no I/O.

Every function takes the workers' answers in worker order, each ``(HTTP status,
JSON body)`` or None for a worker that did not answer, and returns the front's
answer. The front (:mod:`.front`) asks; these decide.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

Answer = tuple[int, Any] | None
"""One worker's ``(status, JSON body)``, or None when it could not answer."""

MERGED_MAX_RUNS = 1000
_SCENARIO_FLAGS = ("running", "stopping", "held")


class NoWorkerAnswered(Exception):
    """Not one worker answered: the front has nothing to merge (HTTP 503)."""

    def __init__(self) -> None:
        super().__init__("no worker answered")


def merge_readiness(indices: Sequence[int], answers: Sequence[Answer]) -> tuple[bool, str]:
    """Ready when every worker answered ``/readyz`` 200; else the first one that did not, why."""
    for index, answer in zip(indices, answers, strict=True):
        if answer is None:
            return False, f"worker {index}: not started"
        status, body = answer
        if status != 200:
            why = body.get("reason", body) if isinstance(body, dict) else body
            return False, f"worker {index}: {why}"
    return True, ""


# Worse live results rank higher (loadsvc.live.LiveResult).
_LIVE_RANK = {"idle": 0, "starting": 0, "passed": 1, "generator_bound": 2, "failed": 3}


def merge_status(
    answers: Sequence[Answer],
    *,
    shard: str,
    started_at: float,
    ready: bool,
    workers: list[dict[str, Any]],
) -> dict[str, Any]:
    """The first answering worker's status document, with each scenario's users summed and its
    flags (running, stopping, held) true if any worker's is, the worst worker's generator state,
    and the front's own service facts."""
    docs = [a[1] for a in answers if a is not None and a[0] == 200]
    doc: dict[str, Any] = copy.deepcopy(docs[0]) if docs else {"service": {}, "scenarios": []}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        for sc in d.get("scenarios", []):
            by_name.setdefault(sc["name"], []).append(sc)
    for sc in doc["scenarios"]:
        mine = by_name.get(sc["name"], [sc])
        sc["users"] = sum(int(s.get("users") or 0) for s in mine)
        for flag in _SCENARIO_FLAGS:
            sc[flag] = any(bool(s.get(flag)) for s in mine)
        # The live judgement of the worker whose share is worst: a breach on any share shows.
        lives = [s["live"] for s in mine if isinstance(s.get("live"), dict)]
        if lives:
            sc["live"] = max(lives, key=lambda live: _LIVE_RANK.get(live.get("result"), 0))
    generators = [d["generator"] for d in docs if isinstance(d.get("generator"), dict)]
    if generators:  # the worst worker's: one busy worker makes the replica's numbers doubtful
        doc["generator"] = max(
            generators, key=lambda g: (bool(g.get("busy")), g.get("loop_lag_p99_ms") or 0.0)
        )
    doc["service"].update(
        shard=shard,
        started_at=datetime.fromtimestamp(started_at, UTC).isoformat(),
        ready=ready,
        workers=workers,
    )
    return doc


def merge_runs(answers: Sequence[Answer], limit: int) -> list[dict[str, Any]]:
    """Every worker's runs, newest (``ended_at``) first, at most ``limit`` (and 1000).

    Raises NoWorkerAnswered when not one worker answered.
    """
    got = [a for a in answers if a is not None]
    if not got:
        raise NoWorkerAnswered
    merged = [run for status, body in got if status == 200 for run in body["runs"]]
    merged.sort(key=lambda run: float(run.get("ended_at") or 0), reverse=True)
    return merged[: min(MERGED_MAX_RUNS, limit)]


def merge_control(indices: Sequence[int], answers: Sequence[Answer]) -> tuple[int, dict[str, Any]]:
    """A run/stop fanned out to every worker: (status, body) of the front.

    202 when any worker accepted, else the first answering worker's status; the
    body is that worker's answer plus every worker's ``{index, status, answer}``.
    Raises NoWorkerAnswered when not one worker answered.
    """
    got = [a for a in answers if a is not None]
    if not got:
        raise NoWorkerAnswered
    first_status, first_body = got[0]
    body = dict(first_body) if isinstance(first_body, dict) else {"answer": first_body}
    body["workers"] = [
        {"index": index, "status": a[0] if a else None, "answer": a[1] if a else None}
        for index, a in zip(indices, answers, strict=True)
    ]
    accepted = any(status == 202 for status, _ in got)
    return (202 if accepted else first_status), body
