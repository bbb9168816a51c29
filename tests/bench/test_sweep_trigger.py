"""bench/sweep_trigger.py: a soak's readings at full collections' ends, replayed."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from bench.sweep_trigger import Floor, OneReading, readings, replay

SWING = [356, 367, 332, 337, 361, 340, 323, 367, 368, 341, 333, 372, 362, 335, 350, 353]


def _soak(tmp_path: Path) -> Path:
    ends = []
    for i, k in enumerate(SWING):
        # Every cycle had a new full collection but the fourth ones, which read the old one.
        ends.append({"t_s": 10.0 * i, "heap_gc_blocks": k * 1000, "full_gcs": i - i // 4})
    path = tmp_path / "soak.json"
    path.write_text(json.dumps({"cycle_ends": ends}))
    return path


def test_readings_are_the_cycles_with_a_new_full_collection(tmp_path: Path) -> None:
    """A cycle end whose full collection count did not move repeats an old reading: left out;
    played three times, the series runs on in time, every other play backwards."""
    once = readings(_soak(tmp_path))
    assert [b // 1000 for _, b in once] == [k for i, k in enumerate(SWING) if i % 4 != 0]
    thrice = readings(_soak(tmp_path), repeat=3)
    assert len(thrice) == 3 * len(once)
    assert [b for _, b in thrice[len(once) : 2 * len(once)]] == [b for _, b in reversed(once)]
    assert all(b[0] > a[0] for a, b in itertools.pairwise(thrice))


def test_the_swing_sweeps_under_one_reading_and_not_under_the_floor(tmp_path: Path) -> None:
    """Over 50 minutes of a soak's swing (its trough recurring within every window) the old
    trigger sweeps and the floor does not; with a leak, the floor's sweeps hold the pile after
    the first near 2 % plus a window of it."""
    series = readings(_soak(tmp_path), repeat=20)[1:]  # from a low reading: 332k
    assert replay(series, OneReading(), 0.0)["sweeps"] >= 1
    assert replay(series, Floor(240.0), 0.0)["sweeps"] == 0
    leaked = replay(series, Floor(240.0), 0.01 * 350_000 / 60)
    assert leaked["sweeps"] >= 5
    assert leaked["pile_after"] <= 0.02 * 372_000 + 0.01 * 350_000 / 60 * 250


def _trough_series(tmp_path: Path, plays: list[int]) -> list[tuple[float, int]]:
    ends = [
        {"t_s": 12.5 * i, "heap_gc_blocks": k * 1000, "full_gcs": i + 1}
        for i, k in enumerate(plays)
    ]
    path = tmp_path / "soak.json"
    path.write_text(json.dumps({"cycle_ends": ends}))
    return readings(path, repeat=20)


def test_a_deep_trough_rarer_than_the_window_is_no_step_unless_it_holds_a_tenth_of_it(
    tmp_path: Path,
) -> None:
    """The limit of the floor (a window's 10th percentile): a trough 3 % under the rest of the
    swing that recurs only every ~300 s, longer than the 240 s window. Two readings at a time
    (under a tenth of a window's ~20) set no baseline: no sweep (the window's minimum swept
    here). Six at a time (a third of it) set baselines that the windows without them cross:
    sweeps with no leak; a 300 s window holds them again: none."""
    rest = [356, 367, 337, 361, 340, 368, 341, 333, 362, 335, 350]
    pairs = _trough_series(tmp_path, [323, *rest])  # at each turn of the play: two in a row
    assert replay(pairs, Floor(240.0), 0.0)["sweeps"] == 0
    sixes = _trough_series(tmp_path, [323, 324, 323, *rest[2:]])  # six in a row
    assert replay(sixes, Floor(240.0), 0.0)["sweeps"] > 0
    assert replay(sixes, Floor(300.0), 0.0)["sweeps"] == 0
