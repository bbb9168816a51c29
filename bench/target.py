"""The reference target as a pinned child process, with its admin API (faults, stats)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import procs
from loadsvc.localstack import free_port

SNAPSHOT = "/api/market/snapshot"
WS_MARKET = "/ws/market"


class TargetProcess:
    """A running reference target on 127.0.0.1, pinned to one core."""

    def __init__(self, core: int, log: Path, throttle_s: float = 0.5, tick_s: float = 0.1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        pacing = [] if (throttle_s, tick_s) == (0.5, 0.1) else [str(throttle_s), str(tick_s)]
        self.proc = procs.spawn(procs.python("target_main.py", str(self.port), *pacing), core, log)
        self._wait_healthy(timeout=20.0)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "/healthz")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the reference target did not start on {self.url}"
                    ) from None
                time.sleep(0.05)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def set_faults(self, faults: dict[str, Any]) -> None:
        """``POST /admin/faults``."""
        self._call("POST", "/admin/faults", faults)

    def stats(self) -> dict[str, Any]:
        """``GET /admin/stats``."""
        doc: dict[str, Any] = self._call("GET", "/admin/stats")
        return doc

    def delivery(self) -> dict[str, Any]:
        """``GET /admin/stats/delivery``: ground-truth delivery latency per WS path."""
        doc: dict[str, Any] = self._call("GET", "/admin/stats/delivery")
        return doc

    def reset_delivery(self) -> None:
        """``DELETE /admin/stats/delivery``: the ground truth's window starts now."""
        self._call("DELETE", "/admin/stats/delivery")

    def requests_served(self, path: str = SNAPSHOT) -> int:
        """REST requests the target has counted on ``path``."""
        return int(self.stats()["rest_requests"][path])

    def connections(self, path: str = WS_MARKET) -> int:
        """Open WS connections on ``path``."""
        return int(self.stats()["connections"][path])

    def close(self) -> None:
        """Stop the target (by PID)."""
        procs.stop(self.proc)

    def __enter__(self) -> TargetProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(check: Any, timeout: float, what: str) -> None:
    """Poll ``check()`` every 50 ms until it is true, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(0.05)


def finished(proc: subprocess.Popen[bytes]) -> bool:
    """Whether a child has exited."""
    return proc.poll() is not None
