"""Helpers for tests that run loadsvc as real processes (stopped by PID, never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from loadsvc.localstack import wait_ready

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 10.0) -> None:
    """Poll ``url`` until it answers 200, within ``timeout``."""
    wait_ready(url, timeout)


def loadsvc(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the loadsvc CLI to completion."""
    return subprocess.run(
        [sys.executable, "-m", "loadsvc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        check=False,
    )


def start(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a loadsvc process in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "loadsvc", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def stop(proc: subprocess.Popen[str], timeout: float = 15) -> int:
    """SIGTERM the process by its PID and wait; SIGKILL if it will not go."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def target_process(port: int | None = None) -> Iterator[str]:
    """The reference target as a real process; yields its base URL."""
    port = port or free_port()
    proc = start(["target", "--host", "127.0.0.1", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz")
        yield url
    finally:
        stop(proc)
