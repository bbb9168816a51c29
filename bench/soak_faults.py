"""The soak's faults: the reference target killed and restarted, and admin-API fault windows.

The timeline is planned from the duration alone (``plan_faults``), so it is known before the
run starts and printed with the results. Restarts are spread evenly after the warm-up; between
two restarts, one admin fault window at a time, in rotation: stalled publishing, a latency
burst, an error burst, malformed frames, abrupt closes. Loss and delay on the path need
``tc netem``; ``netem_unavailable()`` says why it cannot run here, if it cannot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs

WS_MARKET = "/ws/market"
FOREIGN = "/api/market/foreign-detail"
SNAPSHOT = "/api/market/snapshot"

# name -> POST /admin/faults body (cleared at the end of the window, drop_connections is one-shot)
ADMIN_FAULTS: dict[str, dict[str, Any]] = {
    "stall": {"stall": [WS_MARKET, FOREIGN]},
    "latency": {"latency_ms": {FOREIGN: 300, SNAPSHOT: 300}, "ws_delay_ms": {WS_MARKET: 200}},
    "errors": {"error_ratio": {FOREIGN: 0.2, SNAPSHOT: 0.2, WS_MARKET: 0.2}},
    "malformed": {"malformed_ratio": {WS_MARKET: 0.05}},
    "abrupt_close": {"drop_connections": {WS_MARKET: 0.3}},
}


@dataclass(frozen=True)
class FaultEvent:
    """One planned fault: a restart of the target, or an admin fault held for ``hold_s``."""

    at_s: float
    kind: str  # "restart" or a key of ADMIN_FAULTS
    hold_s: float = 0.0


# Where in its cycle a restart falls: a tenth of a cycle after the cycle's start, so the
# first comes a little after the warm-up and the run ends a tenth of a cycle into the last.
RESTART_AT = 0.1


def cycle_gap(duration_s: float, warmup_s: float, restarts: int) -> float | None:
    """Seconds between restarts (whole milliseconds), None without restarts or time for them.

    The run's end is where restart ``restarts + 1`` would be: every cycle's end, the last
    one's too, is read at the same moment of its cycle, so at the same phase of a scheduled
    load whose period is a whole number of cycles (``bench/soak_config.py``)."""
    span = duration_s - warmup_s
    if restarts <= 0 or span <= 0:
        return None
    return round(span / (restarts + RESTART_AT), 3)


def plan_faults(duration_s: float, warmup_s: float, restarts: int) -> list[FaultEvent]:
    """Restarts evenly over (warm-up, end), each followed by one admin fault window."""
    events: list[FaultEvent] = []
    gap = cycle_gap(duration_s, warmup_s, restarts)
    if gap is None:
        return events
    rotation = list(ADMIN_FAULTS)
    for i in range(restarts):
        at = warmup_s + (i + RESTART_AT) * gap
        events.append(FaultEvent(at, "restart"))
        # Half-way to the next restart, well clear of this one's recovery; a third of a gap long.
        kind = rotation[i % len(rotation)]
        events.append(FaultEvent(at + gap * 0.45, kind, hold_s=min(30.0, gap / 3)))
    return events


def admin(url: str, method: str, path: str, body: Any = None, timeout: float = 5.0) -> Any:
    """One call to the target's admin API (JSON in, JSON out)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


class SoakTarget:
    """The reference target as a process on a fixed 127.0.0.1 port, so a restart keeps its URL."""

    def __init__(self, port: int, core: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._core = core
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> float:
        """Start the target and wait until it answers; the monotonic time it did."""
        command = [sys.executable, "-m", "loadsvc", "target", "--host", "127.0.0.1"]
        self.proc = procs.spawn([*command, "--port", str(self.port)], self._core, self._log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin(self.url, "GET", "/healthz", timeout=1.0)
                return time.monotonic()
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the target did not start on {self.url}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the target by its PID (a crash: no close frames, no goodbye) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """Stop the target cleanly (SIGTERM by PID)."""
        if self.proc is not None:
            procs.stop(self.proc)

    def set_faults(self, body: dict[str, Any]) -> None:
        """``POST /admin/faults``."""
        admin(self.url, "POST", "/admin/faults", body)

    def clear_faults(self) -> None:
        """``DELETE /admin/faults``."""
        admin(self.url, "DELETE", "/admin/faults")


def netem_unavailable() -> str | None:
    """None if ``tc netem`` works in a fresh network namespace here, else why not."""
    ns = f"loadsvc-soak-probe-{os.getpid()}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False)

    try:
        made = run("ip", "netns", "add", ns)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ip netns is not usable: {exc}"
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    try:
        netem = run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem")
        if netem.returncode != 0:
            return (
                f"tc netem is not available in this kernel ({netem.stderr.strip()}); "
                "no sch_netem module to load"
            )
        return None
    finally:
        run("ip", "netns", "del", ns)
