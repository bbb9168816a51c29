"""What the run history's writes cost the loop once it is full:
``python bench/history_cost.py [--max-mib 10] [--rounds 5]``.

``serve`` appends every finished run and verdict window to the run history on the event loop
(:class:`loadsvc.service.history.RunHistory`), and each append checks the bounds. When the file
passes ``max_bytes`` (10 MiB by default; with the seed's continuous scenarios about once a day)
the append compacts it: it drops the oldest records down to half the cap and writes the rest
to a new file, flushed to disk (``fsync``) and renamed over the old one. A 30-minute soak never
gets there. This builds a history of the seed's shape (``bench/judge_cost.py``'s records, ~3-6 KB
each) just under the cap and times, in one process:

- ``append``: one record added below the cap (the bounds checked, one line appended);
- ``compaction``: the append that passes the cap (about half the file rewritten and synced).

Wall time is what the loop waits; CPU time is this thread's. The disk decides the rest: this
machine's virtual disk, not a server's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

if __package__ in (None, ""):  # run as a script: the repository's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.judge_cost import T0, history
from bench.table import Table
from loadsvc.service.history import RunHistory


def measure(max_bytes: int, rounds: int, rng: random.Random) -> dict[str, list[float]]:
    """Per round: wall and CPU ms of an append below the cap and of the compacting one, the
    records kept and the file's size after it."""
    keys = ("append", "append_cpu", "compact", "compact_cpu", "kept", "file_mib")
    out: dict[str, list[float]] = {k: [] for k in keys}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.jsonl"
        # Records of the seed's shape, enough to pass the cap by a margin.
        history(source, 200, rng)
        history(source, int(max_bytes / (source.stat().st_size / 200) * 1.1) + 10, rng)
        lines = source.read_bytes().splitlines(keepends=True)
        sizes = [len(line) for line in lines]
        # The file starts two records under the cap: the first append stays below it,
        # then appends go on until one passes it and compacts.
        total, first = 0, 0
        while total + sizes[first] + sizes[first + 1] + sizes[first + 2] <= max_bytes:
            total += sizes[first]
            first += 1
        for r in range(rounds):
            path = Path(tmp) / f"runs-{r}.jsonl"
            path.write_bytes(b"".join(lines[:first]))
            runs = RunHistory(path, max_bytes=max_bytes, max_age_s=1e12, clock=lambda: T0)
            docs = [orjson.loads(line) for line in lines[first:]]
            kind = "append"
            for doc in docs:
                before = len(runs)
                wall, cpu = time.perf_counter(), time.thread_time()
                runs.append(doc)
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                if len(runs) <= before:  # it compacted
                    out["compact"].append(wall * 1000)
                    out["compact_cpu"].append(cpu * 1000)
                    break
                if kind == "append":
                    out["append"].append(wall * 1000)
                    out["append_cpu"].append(cpu * 1000)
                    kind = "wait"
            else:
                raise RuntimeError("the appends did not pass the cap")
            out["kept"].append(len(runs))
            out["file_mib"].append(path.stat().st_size / 2**20)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-mib", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    got = measure(int(args.max_mib * 2**20), args.rounds, random.Random(1))
    rows = [
        [
            what,
            f"{statistics.median(got[key]):.2f}",
            f"{min(got[key]):.2f}-{max(got[key]):.2f}",
            f"{statistics.median(got[key + '_cpu']):.2f}",
        ]
        for what, key in (("append below the cap", "append"), ("compacting append", "compact"))
    ]
    print(
        Table(
            f"The run history at its cap of {args.max_mib:g} MiB, on the loop "
            f"({args.rounds} rounds; ms)",
            ["write", "wall median", "wall min-max", "CPU median"],
            rows,
            note=f"after compaction: {statistics.median(got['kept']):.0f} records, "
            f"{statistics.median(got['file_mib']):.1f} MiB on disk (synced, then renamed)",
        ).text()
    )


if __name__ == "__main__":
    main()
