"""Helpers of the ``loadsvc serve`` tests: real processes by PID, HTTP, metrics, polling."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
# One knob to stretch every timeout on a slow or busy machine.
TIMEOUT_SCALE = float(os.environ.get("LOADSVC_TEST_TIMEOUT_SCALE", "1"))
T = TypeVar("T")


def scaled(seconds: float) -> float:
    """``seconds`` stretched by the suite's timeout factor."""
    return seconds * TIMEOUT_SCALE


def eventually(check: Callable[[], T], within: float, what: str, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy (returned); fail after ``within`` s."""
    deadline = time.monotonic() + scaled(within)
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {within} s (last: {result!r})")
        time.sleep(every)


async def until(check: Callable[[], object], within: float, what: str) -> None:
    """Poll ``check`` on the event loop until it is truthy; fail after ``within`` s."""
    deadline = time.monotonic() + scaled(within)
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {within} s")
        await asyncio.sleep(0.02)


# -- HTTP ---------------------------------------------------------------------------


def http(
    method: str, url: str, token: str | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """(status, body) of one request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str) -> Any:
    """GET ``url`` and parse its JSON body (asserting 200)."""
    status, body = http("GET", url)
    assert status == 200, (url, status, body[:200])
    return json.loads(body)


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# -- processes ----------------------------------------------------------------------


class Proc:
    """A loadsvc process; its stdout and stderr are read continuously into ``lines``."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "loadsvc", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        with stream:
            for line in stream:
                into.append(line)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def output(self) -> str:
        """Everything written so far, stdout then stderr."""
        return "".join(self.out) + "".join(self.err)

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines (of ``event``) written to stderr so far."""
        found = []
        for line in list(self.err):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and (event is None or doc.get("event") == event):
                found.append(doc)
        return found

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to this process by its PID."""
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        """Wait for the exit; its code (TimeoutExpired if it does not exit)."""
        code = self.popen.wait(scaled(timeout))
        for reader in self._readers:
            reader.join(2)
        return code

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM by PID and wait; SIGKILL by PID if it will not go."""
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait()


def start_target(port: int = 0) -> tuple[Proc, int]:
    """The reference target as a process on 127.0.0.1; (process, bound port)."""
    proc = Proc(["target", "--host", "127.0.0.1", "--port", str(port)])

    def bound() -> int | None:
        for line in proc.out:
            if "listening on http://" in line:
                return int(line.rsplit(":", 1)[1])
        assert proc.popen.poll() is None, proc.output()
        return None

    return proc, eventually(bound, 10, "the target listening")


def start_serve(
    args: list[str], env: dict[str, str] | None = None, within: float = 15
) -> tuple[Proc, str]:
    """``loadsvc serve`` on 127.0.0.1 port 0 with JSON logs; (process, base URL)."""
    proc = Proc(
        ["--log-json", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        env={"LOADSVC_API_TOKEN": "", "LOADSVC_API_TOKEN_FILE": "", **(env or {})},
    )

    def url() -> str | None:
        for doc in proc.events("serving"):
            return str(doc["url"])
        assert proc.popen.poll() is None, proc.output()
        return None

    return proc, eventually(url, within, "serve listening")
