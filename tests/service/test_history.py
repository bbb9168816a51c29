"""Run history: JSON lines that survive a reopen, bounded by size and age."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from loadsvc.service.history import RunHistory


def record(scenario: str, n: int, ended_at: float, pad: int = 0) -> dict[str, Any]:
    """A minimal run record."""
    return {"scenario": scenario, "run_id": f"{scenario}-{n}", "ended_at": ended_at, "x": "." * pad}


def test_records_survive_a_reopen_most_recent_first(tmp_path: Path) -> None:
    """Appended records are read back by a new instance, newest first, with filters."""
    path = tmp_path / "h.jsonl"
    history = RunHistory(path, 1_000_000, 3600, clock=lambda: 100.0)
    for i in range(5):
        history.append(record("a" if i % 2 else "b", i, 90.0 + i))
    again = RunHistory(path, 1_000_000, 3600, clock=lambda: 100.0)
    assert [r["run_id"] for r in again.recent()] == ["b-4", "a-3", "b-2", "a-1", "b-0"]
    assert [r["run_id"] for r in again.recent("a")] == ["a-3", "a-1"]
    assert [r["run_id"] for r in again.recent(limit=2)] == ["b-4", "a-3"]
    assert again.last("a") == record("a", 3, 93.0)
    assert again.last("c") is None


def test_size_bound_compacts_oldest_but_keeps_each_scenarios_latest(tmp_path: Path) -> None:
    """Past max_bytes the file is compacted to about half, oldest first; every scenario keeps
    its latest record."""
    path = tmp_path / "h.jsonl"
    history = RunHistory(path, 4000, 3600, clock=lambda: 1000.0)
    history.append(record("daily", 0, 900.0, pad=100))
    for i in range(60):
        history.append(record("stream", i, 901.0 + i, pad=100))
        assert path.stat().st_size <= 4000
    ids = [r["run_id"] for r in history.recent()]
    assert "daily-0" in ids and "stream-59" in ids and "stream-0" not in ids
    assert path.stat().st_size == history.size_bytes
    reopened = RunHistory(path, 4000, 3600, clock=lambda: 1000.0)
    assert [r["run_id"] for r in reopened.recent()] == ids


def test_age_bound_drops_old_records_on_open_and_append(tmp_path: Path) -> None:
    """Records older than max_age are dropped when the file is opened and on the next append."""
    path = tmp_path / "h.jsonl"
    now = [1000.0]
    history = RunHistory(path, 1_000_000, 100, clock=lambda: now[0])
    history.append(record("a", 0, 950.0))
    history.append(record("a", 1, 990.0))
    now[0] = 1060.0
    history.append(record("a", 2, 1060.0))
    assert [r["run_id"] for r in history.recent()] == ["a-2", "a-1"]
    now[0] = 1095.0
    assert [r["run_id"] for r in RunHistory(path, 1_000_000, 100, lambda: now[0]).recent()] == [
        "a-2"
    ]
    assert len(path.read_bytes().splitlines()) == 1


def test_unreadable_lines_are_skipped_and_dropped(tmp_path: Path) -> None:
    """A line cut short by a crash is skipped, and the file rewritten without it."""
    path = tmp_path / "h.jsonl"
    good = orjson.dumps(record("a", 0, 10.0))
    path.write_bytes(good + b"\n" + b'{"scenario": "a", "run_' + b"\n")
    history = RunHistory(path, 1_000_000, 3600, clock=lambda: 20.0)
    assert [r["run_id"] for r in history.recent()] == ["a-0"]
    assert path.read_bytes() == good + b"\n"
