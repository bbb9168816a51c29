"""loadsvc as real child processes: started with this interpreter, stopped by PID, never by name.

Two ways to keep a child's output: :class:`Proc` reads its pipes continuously
into lists (for tests that read its log lines), :func:`start_logged` writes it
to a file (for long runs, where a pipe nobody reads could fill up).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from loadsvc.localstack import Process, stop_process, wait_ready
from tests.support.timing import scaled, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, **(extra or {})}


def loadsvc(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the loadsvc CLI to completion (from the repository root); its result."""
    return subprocess.run(
        [sys.executable, "-m", "loadsvc", *args],
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
        env=_env(env),
        cwd=ROOT,
        check=False,
    )


# How the interpreter is told to run loadsvc; a test may run it through a wrapper instead
# (``-c`` code that sets something up, then runs the module).
AS_MODULE = ("-m", "loadsvc")


def start(
    args: Sequence[str], env: dict[str, str] | None = None, python: Sequence[str] = AS_MODULE
) -> subprocess.Popen[str]:
    """Start a loadsvc process in the background, its output on pipes."""
    return subprocess.Popen(
        [sys.executable, *python, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(env),
        cwd=ROOT,
    )


def stop(proc: subprocess.Popen[Any], timeout: float = 15) -> int:
    """SIGTERM the process by its PID and wait (scaled); SIGKILL if it will not go."""
    return stop_process(proc, scaled(timeout))


class Proc:
    """A loadsvc process; its stdout and stderr are read continuously into ``out`` and ``err``."""

    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, python: Sequence[str] = AS_MODULE
    ) -> None:
        self.args = args
        self.popen = start(args, env, python)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], into: list[str]) -> None:
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
        """Wait for the exit (``timeout`` scaled); its code (TimeoutExpired if it does not exit)."""
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

    return proc, wait_for(bound, 10, "the target listening")


@contextlib.contextmanager
def target_process() -> Iterator[str]:
    """The reference target as a real process for the ``with`` block; yields its base URL."""
    proc, port = start_target()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def start_serve(
    args: list[str],
    env: dict[str, str] | None = None,
    within: float = 15,
    python: Sequence[str] = AS_MODULE,
) -> tuple[Proc, str]:
    """``loadsvc serve`` on 127.0.0.1 port 0 with JSON logs; (process, base URL)."""
    proc = Proc(
        ["--log-json", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        env={"LOADSVC_API_TOKEN": "", "LOADSVC_API_TOKEN_FILE": "", **(env or {})},
        python=python,
    )

    def url() -> str | None:
        for doc in proc.events("serving"):
            return str(doc["url"])
        assert proc.popen.poll() is None, proc.output()
        return None

    return proc, wait_for(url, within, "serve listening")


def start_logged(name: str, args: list[str], workdir: Path, url: str, ready: str) -> Process:
    """``python -m loadsvc ARGS`` logging to ``workdir/NAME.log``, waited on until ``url+ready``.

    It runs in ``workdir``, so anything it writes by default lands there, not in the repository.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    log = log_path.open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", "loadsvc", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        # Outside the repository ``-m loadsvc`` would find whichever copy is installed:
        # this checkout's is the one under test.
        env=_env({"PYTHONPATH": str(ROOT)}),
    )
    proc = Process(name, url, popen, log_path, log)
    try:
        wait_ready(url + ready, timeout=scaled(20), proc=popen)
    except (RuntimeError, TimeoutError) as exc:
        proc.stop()
        raise RuntimeError(f"{name} did not start: {exc}\n{proc.log_tail()}") from None
    return proc
