"""bench/spawn_turns.py's own arithmetic: the CPU-time lag and whose a long turn is."""

from __future__ import annotations

import pytest

from bench.spawn_turns import _Probe


def probe_with(turns_ms: list[float], pauses: dict[int, float]) -> _Probe:
    """A probe holding ``turns_ms`` laid end to end (1 s of wall each), with collector
    pauses (ms) ending inside the turns given by index."""
    probe = _Probe()
    cpu = 0.0
    for i, ms in enumerate(turns_ms):
        cpu += ms / 1e3
        probe.start.append(float(i))
        probe.end.append(i + 0.999)
        probe.cpu.append(ms / 1e3)
        probe.cpu_end.append(cpu)
        if i in pauses:
            probe.pause_at.append(i + 0.5)
            probe.pause.append(pauses[i] / 1e3)
    return probe


def test_one_long_turn_is_the_lag_p99_unless_the_collector_took_it() -> None:
    """A 100 ms turn among 1 ms ones sets the CPU lag p99; with 90 ms of it a collection, not."""
    turns = [1.0] * 500 + [100.0] + [1.0] * 500
    mine = probe_with(turns, {})
    summary = mine.summary(0.0, len(turns))
    assert summary["over_10"] == 1 and summary["over_10_own"] == 1
    assert summary["longest_ms"] == pytest.approx(100.0)
    assert 50.0 <= summary["lag_p99_ms"] <= 100.0  # a sample fell in it, waited for its end
    collected = probe_with(turns, {500: 90.0}).summary(0.0, len(turns))
    assert collected["over_10"] == 1 and collected["over_10_own"] == 0
    assert collected["lag_p99_ms"] == pytest.approx(summary["lag_p99_ms"])
    assert collected["lag_p99_own_ms"] <= 10.0  # the 10 ms left of it
    assert probe_with([1.0] * 1000, {}).summary(0.0, 1000)["lag_p99_ms"] <= 1.0
