"""bench/soak.py: its plan and configuration, and a toy-sized soak run end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench import soak
from bench.soak import allocator_env, serve_env
from bench.soak_config import accelerated, soak_config, soak_config_text
from bench.soak_faults import ADMIN_FAULTS, plan_faults
from bench.soak_judge import high_water_rows, memory_rows, sweep_rows
from bench.soak_report import (
    Sample,
    Scrape,
    SoakResult,
    growth,
    lag_p99_ms,
    lag_rows,
)
from loadsvc.config import parse_config
from loadsvc.metrics import LOOP_LAG_BUCKETS

ROOT = Path(__file__).resolve().parents[2]


def test_thirty_minutes_get_ten_restarts_after_warm_up_and_every_admin_fault() -> None:
    """The default plan kills the target 10 times after the warm-up, within the run, and
    holds each kind of admin fault at least once between restarts."""
    events = plan_faults(1800, 300, 10)
    restarts = [e for e in events if e.kind == "restart"]
    assert len(restarts) == 10
    assert all(300 < e.at_s < 1800 for e in events)
    assert {e.kind for e in events} - {"restart"} == set(ADMIN_FAULTS)
    assert all(e.at_s + e.hold_s < 1800 for e in events)


def test_the_soak_config_keeps_the_seed_sizes_and_shortens_its_windows() -> None:
    """At scale 1 the users are the seed's; verdicts, burst and storm come round in minutes."""
    full = soak_config()["scenarios"]
    assert full["market_stream"]["shape"]["users"] == 500
    assert full["foreign_flow"]["shape"]["users"] == 500
    assert full["market_stream"]["schedule"]["verdict_every"] == "1m"
    assert full["market_open_burst"]["schedule"] == {"kind": "interval", "every": "7m"}
    assert full["reconnect_storm"]["schedule"]["every"] == "5m"
    toy = yaml.safe_load(soak_config_text(scale=0.02))["scenarios"]
    assert toy["market_stream"]["shape"]["users"] == 10
    assert [s["target"] for s in toy["market_open_burst"]["shape"]["stages"]] == [16, 16, 0]
    parse_config(soak_config_text(scale=0.02), "soak.yaml")


def test_the_accelerated_config_puts_burst_and_storm_in_step_with_the_restarts() -> None:
    """Restarts every 8 s: the burst every 32 s and inside it, the storm every 16 s for 8 s,
    a history small enough to be compacted; it is a valid configuration."""
    fast = soak_config(scale=0.3, verdict_every="10s", step=accelerated(8.0), squeeze=True)
    burst, storm = fast["scenarios"]["market_open_burst"], fast["scenarios"]["reconnect_storm"]
    assert burst["schedule"] == {"kind": "interval", "every": "32s"}
    assert [s["duration"] for s in burst["shape"]["stages"]] == ["4s", "12s", "4s"]
    assert storm["schedule"] == {"kind": "interval", "every": "16s"}
    assert storm["shape"]["duration"] == "8s" and storm["users"][0]["cycle"] == "4s"
    assert fast["service"] == {"history_max_bytes": 32 * 1024}
    config = parse_config(soak_config_text(0.3, "10s", accelerated(8.0), True), "soak.yaml")
    assert config.service.history_max_bytes == 32 * 1024


def rss_samples(values: list[float]) -> list[Sample]:
    """One sample a second with these RSS values, nothing else measured."""
    return [Sample(float(t), v, None, None, None, None, None) for t, v in enumerate(values)]


def test_growth_compares_floors_so_bursts_and_saw_teeth_are_not_growth() -> None:
    """A burst at the end and a saw-tooth leave the floor flat; a steady rise moves it."""
    saw = [100.0 + 10 * (i % 5) for i in range(60)]
    saw[-5:] = [150.0] * 5  # a burst running at the end
    assert growth(rss_samples(saw), 0.0, "rss_mb") == 0.0
    leak = [100.0 + i for i in range(60)]
    rise = growth(rss_samples(leak), 0.0, "rss_mb")
    assert rise is not None and rise > 0.05
    assert growth(rss_samples([100.0] * 10), 20.0, "rss_mb") is None  # all in the warm-up


def test_an_outage_does_not_become_the_floor() -> None:
    """Samples inside a restart's outage are left out: a dip to 0 connections is no floor."""
    fds = [1000.0] * 60
    fds[10] = 20.0  # the target is down, every connection gone
    samples = [Sample(float(t), None, v, None, None, None, None) for t, v in enumerate(fds)]
    assert growth(samples, 0.0, "fds") == 1000.0 / 20.0 - 1  # what a naive floor would say
    assert growth(samples, 0.0, "fds", [(9.0, 12.0)]) == 0.0


def _cycles(rss: list[float], peaks: list[float]) -> SoakResult:
    """A soak of ``len(rss) - 1`` restarts 10 s apart, the load in step with them: RSS at
    each cycle's end, and a sample there of that RSS and a heap at the heap's peak so far."""
    result = SoakResult(duration_s=100.0, warmup_s=0.0, users_scale=1.0)
    result.restarts = [{"at_s": 10.0 * k, "recovery_s": 1.0} for k in range(len(rss) - 1)]
    result.phase_cycles = 1
    result.cycle_ends = [{"t_s": 10.0 * k, "rss_mb": v} for k, v in enumerate(rss)]
    result.samples = [
        Sample(10.0 * k, v, None, None, None, None, None, heap_blocks=peak)
        for k, (v, peak) in enumerate(zip(rss, peaks, strict=True))
    ]
    return result


def test_rss_is_shown_against_the_heaps_peak_so_far() -> None:
    """RSS that rose with a new peak of the heap reads as a high-water mark; RSS that rose
    while the heap never went higher says there was no new peak (memory the heap does not see)."""
    rss = [80.0] * 11 + [90.0] * 10
    followed = dict(high_water_rows(_cycles(rss, [300e3] * 11 + [330e3] * 10)))
    (row,) = [v for k, v in followed.items() if k.startswith("RSS ceiling against the live heap")]
    assert "RSS 80.0 -> 90.0 MB (+12.50 %)" in row and "+10.00 %" in row
    assert row.endswith("a new peak of the heap, which RSS, a high-water mark, may follow")
    flat = dict(high_water_rows(_cycles(rss, [300e3] * 21)))
    (row,) = [v for k, v in flat.items() if k.startswith("RSS ceiling against the live heap")]
    assert row.endswith("no new peak: a rise of RSS is memory the Python heap does not see")


def test_a_sweep_that_freed_frozen_cycles_the_collector_did_not_count_reads_as_freed() -> None:
    """Two cycles with a sweep whose collector counted 0 and 3 objects while the heap fell
    90 k and 100 k blocks beyond an ordinary full collection's 30 k: the row of what a sweep
    freed shows the blocks (not 0), against the ordinary fall, and a cycle without a sweep
    (its sweep count unchanged) is left out; the objects counted are shown apart, as such."""
    result = _cycles([80.0] * 4, [300e3] * 4)
    sweep = [(0, 0, 0, 0), (1, 0, 90e3, 30e3), (1, 0, 90e3, 30e3), (2, 3, 100e3, 31e3)]
    for end, (sweeps, objects, blocks, ordinary) in zip(result.cycle_ends, sweep, strict=True):
        end |= {
            "sweeps": sweeps,
            "sweep_garbage": objects,
            "sweep_freed_blocks": blocks,
            "full_gc_freed_blocks": ordinary,
        }
    rows = dict(sweep_rows(result))
    (freed,) = [v for k, v in rows.items() if k.startswith("garbage a sweep freed (heap blocks")]
    assert freed.startswith("95,000, 100,000 over 2 cycles with a sweep"), freed
    assert "against an ordinary full collection's 30,500" in freed
    (counted,) = [v for k, v in rows.items() if k.startswith("objects a sweep's collector")]
    assert counted.startswith("2, 3 over 2 cycles") and "finalizer" in counted
    assert sweep_rows(_cycles([80.0] * 4, [300e3] * 4)) == []  # no sweep read: no row


def test_readings_a_loaded_machine_delayed_are_said_to_be_off_the_loads_phase() -> None:
    """The N-against-2N rows say when restarts ran late (the readings then fall at another
    moment of the burst and the storm), and say nothing when every reading was on time."""
    result = _cycles([80.0] * 21, [300e3] * 21)
    result.duration_s = 210.0
    result.restarts = [{"at_s": 10.0 * k, "recovery_s": 1.0} for k in range(20)]
    result.cycle_ends = [{"t_s": 10.0 * k - 0.5, "rss_mb": 80.0} for k in range(21)]
    on_time = dict(memory_rows(result))
    assert not any("late" in v for v in on_time.values())
    result.cycle_ends[18]["t_s"] = 10.0 * 18 + 25  # the reading after restart 18: 25 s late
    late = dict(memory_rows(result))
    (row,) = [v for k, v in late.items() if k.startswith("RSS at the cycle's end after restart 10")]
    assert "readings up to 0 s and 25 s late" in row and "not at the same phase" in row


def test_loop_lag_p99_is_read_from_the_bucket_deltas_of_the_interval() -> None:
    """Only observations between two scrapes count: 100 fast then 100 slow gives the slow bound."""
    page = (
        "# TYPE loadsvc_event_loop_lag_seconds histogram\n"
        'loadsvc_event_loop_lag_seconds_bucket{{le="0.001"}} {a}\n'
        'loadsvc_event_loop_lag_seconds_bucket{{le="0.1"}} {b}\n'
        'loadsvc_event_loop_lag_seconds_bucket{{le="+Inf"}} {b}\n'
        "loadsvc_event_loop_lag_seconds_count {b}\n"
        "loadsvc_event_loop_lag_seconds_sum 1\n"
    )
    first = Scrape(page.format(a=100, b=100))
    second = Scrape(page.format(a=100, b=200))
    assert lag_p99_ms(None, first) == 1.0
    assert lag_p99_ms(first, second) == 100.0
    assert lag_p99_ms(second, second) is None


def test_a_lag_just_over_the_trust_limit_reads_just_over_it() -> None:
    """loadsvc's lag buckets are fine around the 10 ms trust limit: a p99 of 11 ms reads
    12.5 ms in the soak (it read 25 with buckets at 10 and 25), and 9 ms reads under it."""
    registry = CollectorRegistry()
    lag = Histogram(
        "loadsvc_event_loop_lag_seconds", "", buckets=LOOP_LAG_BUCKETS, registry=registry
    )
    for _ in range(1000):
        lag.observe(0.0005)
    first = Scrape(generate_latest(registry).decode())
    for _ in range(1000):
        lag.observe(0.011)
    assert lag_p99_ms(first, Scrape(generate_latest(registry).decode())) == 12.5
    second = Scrape(generate_latest(registry).decode())
    for _ in range(1000):
        lag.observe(0.009)
    assert lag_p99_ms(second, Scrape(generate_latest(registry).decode())) == 10.0


def test_restart_lag_spikes_on_the_fine_buckets_are_shown_and_counted() -> None:
    """Each restart's lag p99 is shown as its bucket bound (7.5, 10, 12.5 ms) and only those
    over the 10 ms trust limit are counted; a restart without a reading is shown as such."""
    result = SoakResult(duration_s=100.0, warmup_s=0.0, users_scale=1.0)
    lags = [7.5, 10.0, 12.5, None, 40.0]
    result.restarts = [
        {"at_s": 10.0 * k, "recovery_s": 1.0, "lag_p99_ms": v} for k, v in enumerate(lags)
    ]
    rows = dict(lag_rows(result))
    row = rows["lag p99 over each restart's recovery, ms (trust limit 10 ms)"]
    assert row == "7.5, 10, 12.5, -, 40; over the limit at 2 of 4 restarts (worst 40 ms)"


def test_the_loop_threads_own_work_and_its_wait_for_a_cpu_are_shown_beside_the_lag() -> None:
    """Restarts and calm intervals over the limit are shown with what the loop's thread did:
    its CPU share of the span, its wait for a CPU and serve's other threads' CPU meanwhile,
    against those within the limit; readings a soak did not take leave the rows out."""
    result = SoakResult(duration_s=100.0, warmup_s=0.0, users_scale=1.0)
    result.restarts = [
        {"at_s": 90.0, "recovery_s": 2.0, "lag_p99_ms": lag, "span_s": 4.0,
         "loop_cpu_ms": cpu, "loop_wait_ms": wait, "major_faults": 0, "others_cpu_ms": 20.0}
        for lag, cpu, wait in ((30.0, 2000.0, 40.0), (5.0, 1200.0, 1.0), (7.5, 1600.0, 3.0))
    ]  # fmt: skip
    rows = dict(lag_rows(result))
    assert rows["the loop's thread at restarts with lag over 10 ms / within it"] == (
        "1: CPU 50 % of the span, waited for a CPU 40.0 ms (worst 40.0) while serve's other "
        "threads ran 20.0 ms (medians); major faults 0 / 2: CPU 40 % of the span, waited for "
        "a CPU 3.0 ms (worst 3.0) while serve's other threads ran 20.0 ms (medians); major "
        "faults 0"
    )
    result.samples = [
        Sample(5.0 * k, 100.0, None, None, None, None, lag, None, cpu, wait, faults, 30.0)
        for k, (lag, cpu, wait, faults) in enumerate(
            [(2.0, 500.0, 1.0, 0), (50.0, 600.0, 80.0, 2), (3.0, 400.0, 0.5, 0)]
        )
    ]
    row = dict(lag_rows(result))[
        "the loop's thread in calm intervals with lag over 10 ms / within it"
    ]
    assert row.startswith("1: CPU 12 % of the span, waited for a CPU 80.0 ms (worst 80.0)")
    assert row.endswith("while serve's other threads ran 30.0 ms (medians); major faults 0")
    assert "major faults 2 / 1:" in row
    result.restarts = [{"at_s": 90.0, "recovery_s": 2.0, "lag_p99_ms": 30.0}]
    result.samples = [Sample(5.0 * k, 100.0, None, None, None, None, 2.0) for k in range(3)]
    assert not any(k.startswith("the loop's thread") for k, _ in lag_rows(result))


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="the plot needs it")
def test_a_toy_soak_prints_the_table_and_writes_the_plot_and_a_recovery(tmp_path: Path) -> None:
    """A 20 s soak with one restart prints the summary and table, writes a PNG, and measures
    the restart's recovery and the faults by reason."""
    out = tmp_path / "soak"
    args = ["--duration", "20s", "--scale", "0.02", "--restarts", "1", "--sample-every", "1s",
            "--malloc", "glibc", "--serve-env", "MALLOC_ARENA_MAX=2"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "bench/soak.py", *args, "--out", str(out), "--recover-timeout", "10s"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    header = (
        "| t (m:ss) | RSS MB | heap kblocks | heap peak so far | fds | sockets | tasks "
        "| WS conns | lag p99 ms |"
    )
    assert header in done.stdout
    assert "| lag p99 over each restart's recovery, ms (trust limit 10 ms) |" in done.stdout
    assert "recovery after 1 target restarts" in done.stdout
    assert (out / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "soak.json").read_text())
    (restart,) = result["restarts"]
    assert isinstance(restart["recovery_s"], float)
    assert 0 < restart["recovery_s"] < 10
    assert len(result["samples"]) >= 10
    assert all(s["rss_mb"] and s["tasks"] and s["heap_blocks"] for s in result["samples"])
    # The state before the restart and after it, each read from loadsvc's own gauges.
    assert [bool(c["rss_mb"] and c["heap_blocks"]) for c in result["cycle_ends"]] == [True] * 2
    # loadsvc's collector hook is installed: its sweeps are read at every cycle's end.
    assert all(c["sweeps"] is not None and c["heap_sweep_blocks"] for c in result["cycle_ends"])
    assert all(c["sweep_freed_blocks"] is not None for c in result["cycle_ends"])
    assert isinstance(restart["lag_p99_ms"], float)
    if sys.platform.startswith("linux"):  # what the loop's thread did, read from /proc
        assert restart["loop_cpu_ms"] > 0 and restart["loop_wait_ms"] >= 0
        assert restart["others_cpu_ms"] >= 0
        assert all(s["loop_cpu_ms"] is not None for s in result["samples"])
    # The kill is seen by loadsvc and counted by reason, not as a crash.
    assert any(key.startswith("ws_connection_errors{reason=") for key in result["faults_seen"])
    assert result["log_problems"] == []
    # What serve alone ran with is said in the table's first line and kept in soak.json.
    assert result["serve_env"] == {"MALLOC_ARENA_MAX": "2"}
    assert "serve ran with MALLOC_ARENA_MAX=2." in (out / "soak.md").read_text().splitlines()[0]


def test_serve_gets_jemalloc_where_it_is_installed_unless_told_glibc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image preloads jemalloc, so the soak does too (found or not, it says which);
    --malloc glibc and an LD_PRELOAD of one's own are left alone; jemalloc asked for and
    missing stops the soak before it starts."""
    monkeypatch.setattr(soak, "jemalloc_path", lambda: "/lib/j.so")
    assert allocator_env(None, []) == {"LD_PRELOAD": "/lib/j.so"}
    assert allocator_env("jemalloc", ["A=1"]) == {"A": "1", "LD_PRELOAD": "/lib/j.so"}
    assert allocator_env("glibc", []) == {}
    assert allocator_env(None, ["LD_PRELOAD=/x.so"]) == {"LD_PRELOAD": "/x.so"}
    monkeypatch.setattr(soak, "jemalloc_path", lambda: None)
    assert allocator_env(None, []) == {}
    with pytest.raises(SystemExit, match="libjemalloc2"):
        allocator_env("jemalloc", [])


def test_serve_env_wants_name_equals_value() -> None:
    """--serve-env NAME=VALUE, repeatable; anything else stops the soak before it starts."""
    assert serve_env(["A=1", "LD_PRELOAD=/x.so", "B="]) == {
        "A": "1",
        "LD_PRELOAD": "/x.so",
        "B": "",
    }
    with pytest.raises(SystemExit, match="want NAME=VALUE"):
        serve_env(["novalue"])
