"""Run history: JSON lines that survive a reopen, bounded by size and age."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from loadsvc.logs import configure_logging
from loadsvc.service.history import RunHistory, history_path_problem
from tests.support import loadsvc


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


def test_a_record_out_of_end_order_still_ages_out(tmp_path: Path) -> None:
    """An append checks the bounds without walking the records (it keeps the earliest end):
    a record that ended before the first one kept (a long run finishing after later windows,
    or a line from before a clock step) is still dropped as soon as it is too old, on append
    and on prune, and the file follows."""
    path = tmp_path / "h.jsonl"
    now = [1000.0]
    history = RunHistory(path, 1_000_000, 100, clock=lambda: now[0])
    history.append(record("a", 0, 980.0))
    history.append(record("b", 1, 920.0))  # ended before a-0, appended after it
    history.append(record("a", 2, 990.0))
    now[0] = 1025.0  # b-1 is 105 s old, a-0 45 s
    history.append(record("a", 3, 1020.0))
    assert [r["run_id"] for r in history.recent()] == ["a-3", "a-2", "a-0"]
    history.append(record("b", 4, 900.0))  # already too old when it comes
    assert [r["run_id"] for r in history.recent()] == ["a-3", "a-2", "a-0"]
    now[0] = 1085.0  # a-0 is 105 s old: dropped by the periodic prune, with no append
    history.prune()
    assert [r["run_id"] for r in history.recent()] == ["a-3", "a-2"]
    assert len(path.read_bytes().splitlines()) == 2


def test_unreadable_lines_are_skipped_and_dropped(tmp_path: Path) -> None:
    """A line cut short by a crash is skipped, and the file rewritten without it."""
    path = tmp_path / "h.jsonl"
    good = orjson.dumps(record("a", 0, 10.0))
    path.write_bytes(good + b"\n" + b'{"scenario": "a", "run_' + b"\n")
    history = RunHistory(path, 1_000_000, 3600, clock=lambda: 20.0)
    assert [r["run_id"] for r in history.recent()] == ["a-0"]
    assert path.read_bytes() == good + b"\n"


# A real "file too large" failure partway through a write: the soft RLIMIT_FSIZE lets the
# first bytes of a line through, then write() fails with EFBIG (SIGXFSZ ignored).
TORN_APPEND = """
import resource, signal, sys
from loadsvc.logs import configure_logging
from loadsvc.service.history import RunHistory
configure_logging(json=True, stream=sys.stderr)
path, limit = sys.argv[1], int(sys.argv[2])
history = RunHistory(path, 1_000_000, 3600, clock=lambda: 100.0)
record = lambda n: {"scenario": "a", "run_id": f"a-{n}", "ended_at": 90.0 + n, "x": "." * 200}
history.append(record(0))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
history.append(record(1))
torn = open(path, "rb").read()
print(len(torn), history.problem)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
history.append(record(2))
print(history.problem)
"""


def test_a_failed_append_never_glues_the_next_record_onto_a_torn_line(tmp_path: Path) -> None:
    """An append cut short by the disk leaves a partial line; the next one repairs the file."""
    path = tmp_path / "h.jsonl"
    first_line = len(orjson.dumps(record("a", 0, 90.0, pad=200))) + 1
    limit = first_line + 50  # half of the second line fits
    done = subprocess.run(
        [sys.executable, "-c", TORN_APPEND, str(path), str(limit)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    out = done.stdout.splitlines()
    assert "File too large" in done.stderr
    torn_size, problem = out[0].split(" ", 1)
    assert int(torn_size) == limit  # the partial line really was on disk
    assert problem.startswith(f"cannot write the run history {path}: ")
    assert out[1] == "None"
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line)["run_id"] for line in lines] == ["a-0", "a-1", "a-2"]


def test_reading_skips_a_torn_line_in_the_middle_and_keeps_the_rest(tmp_path: Path) -> None:
    """A partial line between good ones (an older loadsvc's glued append) costs only itself."""
    path = tmp_path / "h.jsonl"
    a, c = (orjson.dumps(record("a", n, 10.0 + n)) for n in (0, 2))
    path.write_bytes(a + b"\n" + b'{"scenario": "a", "run_id": "a-1", "en' + b"\n" + c + b"\n")
    history = RunHistory(path, 1_000_000, 3600, clock=lambda: 20.0)
    assert [r["run_id"] for r in history.recent()] == ["a-2", "a-0"]


@pytest.mark.parametrize("kind", ["a directory in its place", "a file as its directory"])
def test_an_unwritable_path_is_a_problem_until_it_is_fixed(tmp_path: Path, kind: str) -> None:
    """A history path that cannot be written is reported as ``problem``; cleared once it can."""
    if kind == "a directory in its place":
        path = tmp_path / "h.jsonl"
        path.mkdir()
    else:
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "h.jsonl"
    history = RunHistory(path, 1_000_000, 3600, clock=lambda: 100.0)
    assert history.problem is not None and str(path) in history.problem
    history.append(record("a", 0, 90.0))  # kept in memory, not raised
    assert history.recent()[0]["run_id"] == "a-0"
    assert history.retry() is not None
    if path.is_dir():
        path.rmdir()
    else:
        (tmp_path / "file").unlink()
    assert history.retry() is None
    assert [orjson.loads(line)["run_id"] for line in path.read_bytes().splitlines()] == ["a-0"]


def test_a_symlinked_history_stays_a_link_and_its_target_gets_the_records(tmp_path: Path) -> None:
    """Compaction writes through the link (e.g. onto a persistent volume), never replaces it."""
    volume = tmp_path / "volume"
    volume.mkdir()
    real = volume / "runs.jsonl"
    link = tmp_path / "runs.jsonl"
    link.symlink_to(real)
    history = RunHistory(link, 4000, 3600, clock=lambda: 1000.0)
    for i in range(60):
        history.append(record("stream", i, 901.0 + i, pad=100))  # compacts several times
    assert link.is_symlink() and link.resolve() == real
    assert real.stat().st_size == history.size_bytes
    assert orjson.loads(real.read_bytes().splitlines()[-1])["run_id"] == "stream-59"


def test_shortening_the_history_logs_how_many_records_were_dropped_and_why(
    tmp_path: Path,
) -> None:
    """A history cut to its size and age bounds says how many records went, and for which bound."""
    path = tmp_path / "h.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps(record("a", i, 500.0 + i, pad=100)) + b"\n" for i in range(100))
    )
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    try:
        history = RunHistory(path, 3000, 450, clock=lambda: 1000.0)
    finally:
        structlog.reset_defaults()
    logged = [orjson.loads(ln) for ln in out.getvalue().splitlines()]
    shortened = next(e for e in logged if e["event"] == "run history shortened")
    assert shortened["older_than_max_age"] == 50  # ended before 1000 - 450
    assert shortened["over_max_bytes"] == 50 - len(history) > 0
    assert shortened["dropped"] == 100 - len(history) and shortened["kept"] == len(history)


@pytest.mark.parametrize("kind", ["fifo", "directory", "link to /dev/zero", "unrelated text"])
def test_a_history_path_that_is_no_history_is_refused_at_start_with_exit_2(
    tmp_path: Path, kind: str
) -> None:
    """serve exits 2 naming the path before it listens: a FIFO would hang it, /dev/zero read until
    memory runs out, an unrelated file be overwritten (it stays untouched)."""
    path = tmp_path / "runs.jsonl"
    notes = b"my notes\nnot json at all\n"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(notes)
    assert history_path_problem(path) is not None
    r = loadsvc(
        "serve", "--target", "http://127.0.0.1:9", "--host", "127.0.0.1", "--port", "0",
        "--history-file", str(path), timeout=30,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"--history-file {path}: " in r.stderr
    if kind == "unrelated text":
        assert path.read_bytes() == notes


def test_a_history_or_a_missing_file_is_accepted(tmp_path: Path) -> None:
    """A real history (even with a torn first line), an empty file or none at all may be used."""
    path = tmp_path / "h.jsonl"
    assert history_path_problem(path) is None
    path.write_bytes(b"")
    assert history_path_problem(path) is None
    path.write_bytes(b'{"scenario": "a", "run_\n' + orjson.dumps(record("a", 1, 5.0)) + b"\n")
    assert history_path_problem(path) is None
