"""The soak's fault runner: the planned faults carried out against the running target.

``run_faults`` walks the timeline ``plan_faults`` made (``bench/soak_faults.py``): a restart
kills the target, keeps it down and starts it again, reading the state the cycle ended in
(``cycle_end``) and how long loadsvc took to reconnect; an admin fault is set on the target for
its window and cleared after it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import time
from pathlib import Path

from bench import loopthread
from bench.soak_faults import ADMIN_FAULTS, FaultEvent, SoakTarget
from bench.soak_report import (
    CYCLIC_GARBAGE,
    FULL_COLLECTIONS,
    FULL_GC_FREED_BLOCKS,
    HEAP_AFTER_GC,
    HEAP_AT_SWEEP,
    HEAP_BLOCKS,
    SWEEP_FREED_BLOCKS,
    SWEEP_GARBAGE,
    SWEEPS,
    TRIM_RELEASED,
    TRIM_SECONDS,
    TRIMS,
    SoakResult,
    lag_p99_ms,
    scrape,
)

RECOVERED_SHARE = 0.95  # of the streaming scenario's connections before the kill
STREAM_SCENARIO = "market_stream"


def streaming(url: str) -> float:
    """Open WS connections of the streaming scenario, as loadsvc reports them (0 if unknown)."""
    by_scenario = scrape(url).by_label("loadsvc_ws_connections", "scenario")
    return by_scenario.get(STREAM_SCENARIO, 0.0)


def rss_high_water_mb(pid: int) -> float | None:
    """The process's peak resident memory so far (``VmHWM``; None where unreadable): a trim
    never lowers it, so RSS's saw-tooth cannot move it either way."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return None if found is None else int(found.group(1)) / 1024


def cycle_end(serve_url: str, t0: float, pid: int) -> dict[str, float | None]:
    """RSS and live heap now: the state a restart cycle ends in (None where unreadable)."""
    try:
        now = scrape(serve_url)
    except OSError:
        return {"t_s": time.monotonic() - t0, "rss_mb": None, "heap_blocks": None}
    rss = now.total("process_resident_memory_bytes")
    return {
        "t_s": round(time.monotonic() - t0, 1),
        "rss_mb": None if rss is None else rss / 2**20,
        "rss_hwm_mb": rss_high_water_mb(pid),
        "heap_blocks": now.total(HEAP_BLOCKS),
        # The heap at the end of the last full collection (no garbage in it), and how many
        # there have been: the reading is this cycle's only if one ran in it.
        "heap_gc_blocks": now.total(HEAP_AFTER_GC),
        "full_gcs": now.total(FULL_COLLECTIONS),
        "gc_freed": now.total(CYCLIC_GARBAGE),  # a counter: its rise over a cycle
        # The heap right after the last sweep (no garbage, frozen or not), what that sweep
        # freed (blocks beyond an ordinary full collection's fall, that fall, the objects the
        # collector counted), how many there have been (the reading is this cycle's only if
        # one ran in it), and the glibc trims that follow each.
        "heap_sweep_blocks": now.total(HEAP_AT_SWEEP),
        "sweep_garbage": now.total(SWEEP_GARBAGE),
        "sweep_freed_blocks": now.total(SWEEP_FREED_BLOCKS),
        "full_gc_freed_blocks": now.total(FULL_GC_FREED_BLOCKS),
        "sweeps": now.total(SWEEPS),
        "trims": now.total(TRIMS),
        "trim_s": now.total(TRIM_SECONDS),
        "trim_released": now.total(TRIM_RELEASED),
    }


def restart_target(
    target: SoakTarget, serve_url: str, down_s: float, timeout: float, pid: int | None = None
) -> dict[str, float | None]:
    """Kill the target, keep it down ``down_s``, start it: seconds until loadsvc reconnected,
    and loadsvc's loop lag p99 from the kill until a second after it had; with serve's
    ``pid``, what its loop's thread did meanwhile (``bench/loopthread.py``)."""
    before = scrape(serve_url)
    times = None if pid is None else loopthread.read(pid)
    connected = before.by_label("loadsvc_ws_connections", "scenario").get(STREAM_SCENARIO, 0.0)
    killed_at = time.monotonic()
    target.kill()
    time.sleep(down_s)  # the outage itself, not a wait for a condition
    up_at = target.start()
    want = math.floor(connected * RECOVERED_SHARE)
    deadline = up_at + timeout
    recovery = None
    while time.monotonic() < deadline:
        try:
            if streaming(serve_url) >= want:
                recovery = time.monotonic() - up_at
                break
        except OSError:
            pass
        time.sleep(0.1)
    time.sleep(1.0)  # the stragglers' handshakes belong to the restart's lag too
    try:
        lag = lag_p99_ms(before, scrape(serve_url))
    except OSError:
        lag = None
    after = None if pid is None else loopthread.read(pid)
    spent = None if times is None or after is None else after.since(times)
    return {
        "recovery_s": recovery,
        "lag_p99_ms": lag,
        "span_s": round(time.monotonic() - killed_at, 2),
        "loop_cpu_ms": None if spent is None else round(spent.cpu_s * 1e3, 1),
        "loop_wait_ms": None if spent is None else round(spent.wait_s * 1e3, 1),
        "major_faults": None if spent is None else spent.major_faults,
        "others_cpu_ms": None if spent is None else round(spent.others_cpu_s * 1e3, 1),
    }


def wait_until(t0: float, at_s: float, stop_at: float) -> bool:
    """Sleep until ``t0 + at_s``; False if that is past the end of the run."""
    when = t0 + at_s
    if when >= stop_at:
        return False
    time.sleep(max(0.0, when - time.monotonic()))
    return True


def run_faults(
    events: list[FaultEvent],
    target: SoakTarget,
    serve_url: str,
    args: argparse.Namespace,
    t0: float,
    result: SoakResult,
    pid: int,
) -> None:
    """Carry out the planned faults in order, each recorded in ``result`` (``pid``: serve's)."""
    stop_at = t0 + args.duration
    for event in events:
        if not wait_until(t0, event.at_s, stop_at):
            return
        if event.kind == "restart":
            result.cycle_ends.append(cycle_end(serve_url, t0, pid))
            outcome = restart_target(target, serve_url, args.down, args.recover_timeout, pid)
            result.restarts.append({"at_s": event.at_s, **outcome})
            continue
        try:
            target.set_faults(ADMIN_FAULTS[event.kind])
            result.admin_faults.append(dataclasses.asdict(event))
            if event.kind != "abrupt_close":  # a one-shot action, nothing to clear
                time.sleep(min(event.hold_s, max(0.0, stop_at - time.monotonic())))
                target.clear_faults()
        except OSError as exc:
            print(f"soak: fault {event.kind} not applied: {exc}", file=sys.stderr)
