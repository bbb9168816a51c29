"""Run history: finished runs (and verdict windows) as JSON lines, bounded by age and size.

One line per record, appended and flushed as each run ends, so the history
survives restarts and crashes. The file is bounded: records older than
``max_age_s`` are dropped, and when it grows past ``max_bytes`` it is compacted
to about half of that (oldest records first, but every scenario keeps its
latest record), by writing a new file and
renaming it over the old one, so a crash mid-compaction loses nothing.
An append that fails partway (disk full, EIO) may leave a partial line; the
next write then rewrites the whole file from memory instead of appending, so
no record is ever glued onto a torn one. While the file cannot be written,
``problem`` says why (``/readyz`` reports it).
The lines are also kept in memory (they fit: the file is bounded) to answer
``/api/runs`` without reading the disk; a record is parsed only when asked for.

The path is checked before ``serve`` starts (:func:`history_path_problem`):
something that is not a regular file (a FIFO would hang the start, a link to
``/dev/zero`` read until memory runs out) or a regular file that is not a
history (it would be overwritten) is refused. A symlinked history stays a
link: compaction writes the file it points to. Shortening the file logs how
many records were dropped and why.
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from loadsvc.files import write_atomically

log = structlog.get_logger("loadsvc.history")

# Compact down to this share of max_bytes, so a full file is not rewritten on every append.
COMPACT_TO = 0.5
# How much of an existing file is read to tell whether it is a run history at all.
_SNIFF_BYTES = 64 * 1024


def history_path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be the run history (None: it can, or it does not exist yet).

    Refused: anything that is not a regular file once links are followed (a folder, a FIFO,
    a device), and a non-empty regular file none of whose first lines is a run record.
    """
    where = Path(path)
    try:
        info = where.stat()
    except OSError:
        # Missing, or not reachable yet (a volume still mounting): serve starts and /readyz
        # says so until the history can be written (RunHistory.check_writable).
        return None
    if not stat.S_ISREG(info.st_mode):
        return f"{where}: not a regular file"
    if info.st_size == 0:
        return None
    try:
        with where.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        return f"{where}: {exc.strerror or exc}"
    for line in head.splitlines():
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("scenario"), str):
            return None
    return f"{where}: not a run history (no JSON line with a scenario): refusing to overwrite it"


@dataclass(frozen=True, eq=False)
class HistoryEntry:
    """One record: its line as written (parsed again only when asked for) and its keys.

    Compared and hashed by identity: a record kept is the same object until it is dropped,
    so a reader may remember what it made of one (serve's regression judge does)."""

    line: bytes  # newline included
    scenario: str | None
    ended_at: float

    @classmethod
    def of(cls, doc: dict[str, Any], line: bytes) -> HistoryEntry:
        scenario = doc.get("scenario")
        ended_at = doc.get("ended_at")
        return cls(
            line,
            scenario if isinstance(scenario, str) else None,
            float(ended_at) if isinstance(ended_at, int | float) else 0.0,
        )

    def doc(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.line)
        return parsed


class RunHistory:
    """An append-only, bounded JSON-lines file of run records, newest last."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int,
        max_age_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        self._entries: list[HistoryEntry] = []
        self._size = 0
        # The earliest end of any record kept (records need not be in end order): while it is
        # within max_age_s and the size within max_bytes, an append checks nothing else.
        self._oldest = math.inf
        self._torn = False  # the file may end in a partial line: rewrite, do not append
        self.problem: str | None = None
        self._load()
        self.check_writable()
        self._enforce_bounds(force=bool(self._skipped))

    # -- reading -------------------------------------------------------------

    def recent(self, scenario: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Records, most recent first, optionally of one scenario only and at most ``limit``."""
        return [entry.doc() for entry in self.entries(scenario, limit)]

    def entries(self, scenario: str | None = None, limit: int | None = None) -> list[HistoryEntry]:
        """The records (of ``scenario`` only, if given), most recent first, at most ``limit``,
        unparsed."""
        out: list[HistoryEntry] = []
        for entry in reversed(self._entries):
            if scenario is None or entry.scenario == scenario:
                out.append(entry)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def entries_all(self) -> list[HistoryEntry]:
        """Every record kept, oldest first, unparsed."""
        return list(self._entries)

    def last(self, scenario: str) -> dict[str, Any] | None:
        """The most recent record of ``scenario``, if any."""
        found = self.recent(scenario, 1)
        return found[0] if found else None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes of the records kept (the file's size once written)."""
        return self._size

    # -- writing -------------------------------------------------------------

    def append(self, doc: dict[str, Any]) -> None:
        """Add a record and write it to the file at once; I/O errors are logged, not raised."""
        line = orjson.dumps(doc) + b"\n"
        entry = HistoryEntry.of(doc, line)
        self._entries.append(entry)
        self._size += len(line)
        self._oldest = min(self._oldest, entry.ended_at)
        if self._torn:
            self._rewrite()  # repairs the torn line, and writes this record too
            self._enforce_bounds()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as handle:
                handle.write(line)
        except OSError as exc:
            # Part of the line may be on disk: never append after it.
            self._torn = True
            self._fail("cannot write the run history", exc)
        else:
            self._recovered()
        self._enforce_bounds()

    def check_writable(self) -> str | None:
        """Whether the file can be written (created if missing); sets and returns ``problem``."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab"):
                pass
        except OSError as exc:
            self._fail("cannot write the run history", exc)
        else:
            self._recovered()
        return self.problem

    def retry(self) -> str | None:
        """After a problem, try the file again (called periodically); the problem, if any."""
        if self.problem is None:
            return None
        if self._torn:
            self._rewrite()
            return self.problem
        return self.check_writable()

    def prune(self) -> None:
        """Drop records that have aged out (called periodically; appends also do it)."""
        self._enforce_bounds()

    def set_limits(self, max_bytes: int, max_age_s: float) -> None:
        """New bounds (after a configuration reload); applied now."""
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._enforce_bounds()

    # -- internals -----------------------------------------------------------

    def _load(self) -> None:
        self._skipped = 0
        try:
            if not stat.S_ISREG(self.path.stat().st_mode):
                raise OSError(f"{self.path} is not a regular file")  # never read a FIFO/device
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("cannot read the run history", path=str(self.path), error=str(exc))
            return
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                self._skipped += 1  # e.g. a line cut short by a crash
                continue
            if not isinstance(doc, dict):
                self._skipped += 1
                continue
            entry = HistoryEntry.of(doc, line + b"\n")
            self._entries.append(entry)
            self._size += len(entry.line)
            self._oldest = min(self._oldest, entry.ended_at)
        if self._skipped:
            log.warning(
                "skipped unreadable run history lines", path=str(self.path), lines=self._skipped
            )

    def _enforce_bounds(self, force: bool = False) -> None:
        cutoff = self._clock() - self.max_age_s
        if not force and self._oldest >= cutoff and self._size <= self.max_bytes:
            return  # every append: O(1), not a walk of the records (bench/history_cost.py)
        keep = [e for e in self._entries if e.ended_at >= cutoff]
        size = sum(len(e.line) for e in keep)
        by_age = len(self._entries) - len(keep)
        if size > self.max_bytes:
            # Oldest first, but each scenario keeps its latest record: the frequent windows of
            # continuous scenarios must not push a daily run's last verdict out.
            latest = {e.scenario: i for i, e in enumerate(keep)}
            protected = set(latest.values())
            budget = int(self.max_bytes * COMPACT_TO)
            kept: list[HistoryEntry] = []
            for i, entry in enumerate(keep):
                if size > budget and i not in protected:
                    size -= len(entry.line)
                    continue
                kept.append(entry)
            by_size = len(keep) - len(kept)
            keep = kept
        else:
            by_size = 0
        if by_age or by_size:
            log.info(
                "run history shortened",
                path=str(self.path),
                dropped=by_age + by_size,
                older_than_max_age=by_age,
                over_max_bytes=by_size,
                kept=len(keep),
                max_age_s=self.max_age_s,
                max_bytes=self.max_bytes,
            )
        self._entries = keep
        self._size = size
        self._oldest = min((e.ended_at for e in keep), default=math.inf)
        self._rewrite()

    def _rewrite(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Through a symlink to the file it names: the link (e.g. onto a volume) stays.
            target = Path(os.path.realpath(self.path))
            write_atomically(target, b"".join(entry.line for entry in self._entries))
        except OSError as exc:
            self._fail("cannot compact the run history", exc)
        else:
            self._torn = False
            self._recovered()

    def _fail(self, what: str, exc: OSError) -> None:
        problem = f"{what} {self.path}: {exc.strerror or exc}"
        if problem != self.problem:  # once per distinct problem, not on every record
            log.error(what, path=str(self.path), error=exc.strerror or str(exc))
        self.problem = problem

    def _recovered(self) -> None:
        if self.problem is not None:
            log.info("the run history is writable again", path=str(self.path))
            self.problem = None
