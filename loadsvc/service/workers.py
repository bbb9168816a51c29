"""The worker processes of ``serve --workers N``: start, restart with backoff, stop, parent watch.

Worker k of replica shard i/n is a normal ``loadsvc serve`` bound to 127.0.0.1
port 0 with sub-shard ``i*N+k`` of ``n*N``, so every scenario's users still add
up exactly over workers and replicas. Workers keep their metric values in files
(prometheus-client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` is set in
their environment before they import anything) and write the URL their port 0
became to a file the pool reads.

A worker that exits is restarted with a growing delay and its live gauges are
dropped (``mark_process_dead``). Stopping SIGTERMs every worker and SIGKILLs
what outlives the stop timeout. A worker whose front disappeared (killed with
SIGKILL) notices its new parent and stops itself (:func:`watch_parent`).
The front over the pool is :mod:`.front`; how it merges answers, :mod:`.merge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from prometheus_client.multiprocess import mark_process_dead

from loadsvc.config.spec import Config
from loadsvc.runner import Shard
from loadsvc.service.settings import ServeRequest, ServeSettings
from loadsvc.service.supervisor import RestartBackoff

log = structlog.get_logger("loadsvc.workers")

STABLE_S = 30.0  # a worker that lived this long starts its restart backoff afresh
KILL_GRACE_S = 10.0  # beyond the configured stop timeout, before SIGKILL
PARENT_CHECK_S = 1.0
WORKER_BACKOFF = RestartBackoff(initial_s=1.0, max_s=30.0)
# Worker environment: never inherit a shard, a worker count or another multiprocess directory.
_DROPPED_ENV = ("LOADSVC_SHARD", "LOADSVC_SHARDS", "LOADSVC_WORKERS", "prometheus_multiproc_dir")
# A worker still starting Python when it is told to stop dies of the default SIGTERM
# action: it had installed no handler yet, so it had started no load either.
_STOPPED_CODES = (0, -signal.SIGTERM)


def worker_shard(replica: Shard, workers: int, index: int) -> Shard:
    """Worker ``index`` of a replica's ``workers`` runs sub-shard ``i*N+k`` of ``n*N``."""
    return Shard(replica.index * workers + index, replica.count * workers)


def worker_history_file(path: str, index: int) -> str:
    """Each worker keeps its own history (``runs.jsonl`` -> ``runs.w1.jsonl``)."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}.w{index}{p.suffix}"))


async def watch_parent(parent_pid: int, done: asyncio.Event) -> None:
    """Set ``done`` when this worker's front is gone (it was re-parented)."""
    while not done.is_set():
        if os.getppid() != parent_pid:
            log.error("the front process is gone; stopping", front_pid=parent_pid)
            done.set()
            return
        await asyncio.sleep(PARENT_CHECK_S)


def stopped_cleanly(codes: list[int | None]) -> bool:
    """True when every worker exited as told: 0, or SIGTERM while still starting Python."""
    return all(code in _STOPPED_CODES for code in codes)


@dataclass
class Worker:
    """One worker process slot: its shard, its current process and URL, its restarts."""

    index: int
    shard: Shard
    url_file: Path
    proc: asyncio.subprocess.Process | None = None
    url: str | None = None
    started: float = 0.0  # monotonic
    restarts: int = 0
    crashes: int = 0

    def base_url(self) -> str | None:
        """The worker's URL once it has written it."""
        if self.url is None and self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(OSError):
                self.url = self.url_file.read_text().strip() or None
        return self.url

    def describe(self) -> dict[str, Any]:
        """The worker's line in ``/api/status``."""
        alive = self.proc is not None and self.proc.returncode is None
        return {
            "index": self.index,
            "shard": str(self.shard),
            "pid": self.proc.pid if alive and self.proc else None,
            "url": self.base_url(),
            "restarts": self.restarts,
        }


class WorkerPool:
    """N supervised ``loadsvc serve`` worker processes sharing one metrics directory."""

    def __init__(
        self,
        settings: ServeSettings,
        config: Config,
        request: ServeRequest,
        workdir: Path,
        metrics_dir: Path,
        backoff: RestartBackoff = WORKER_BACKOFF,
    ) -> None:
        self.settings = settings
        self.config = config
        self.request = request
        self.metrics_dir = metrics_dir
        self.backoff = backoff
        self.workers = [
            Worker(k, worker_shard(settings.shard, settings.workers, k), workdir / f"w{k}.url")
            for k in range(settings.workers)
        ]
        self._stopping = asyncio.Event()
        self._keepers: list[asyncio.Task[None]] = []

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` began."""
        return self._stopping.is_set()

    def start(self) -> None:
        """Start every worker (each kept running by its own task)."""
        loop = asyncio.get_running_loop()
        self._keepers = [loop.create_task(self._keep(w)) for w in self.workers]

    async def stop(self) -> list[int | None]:
        """SIGTERM every worker, SIGKILL what outlives the stop timeout; their exit codes."""
        self._stopping.set()
        for w in self.workers:
            self._signal(w, signal.SIGTERM)
        deadline = self.config.service.stop_timeout_s + KILL_GRACE_S
        _, late = await asyncio.wait(self._keepers, timeout=deadline) if self._keepers else ((), ())
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                log.error("worker did not stop in time; killing it", worker=w.index, pid=w.proc.pid)
                w.proc.kill()
        if late:
            await asyncio.wait(late)
        return [w.proc.returncode for w in self.workers if w.proc is not None]

    def reload(self) -> None:
        """SIGHUP: every worker reloads the configuration file."""
        log.info("forwarding SIGHUP to the workers")
        for w in self.workers:
            self._signal(w, signal.SIGHUP)

    @staticmethod
    def _signal(w: Worker, signum: signal.Signals) -> None:
        if w.proc is not None and w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signum)  # by its PID

    def _argv(self, w: Worker) -> list[str]:
        req, settings = self.request, self.settings
        history = settings.history_file or self.config.service.history_file
        argv = [sys.executable, "-m", "loadsvc", *req.log_flags, "serve"]
        argv += ["--host", "127.0.0.1", "--port", "0", "--workers", "1"]
        argv += ["--shard", str(w.shard), "--history-file", worker_history_file(history, w.index)]
        if req.config:
            argv += ["--config", req.config]
        if req.target:
            argv += ["--target", req.target]
        for header in req.headers:
            argv += ["--header", header]
        if req.ca_file:
            argv += ["--ca-file", req.ca_file]
        if req.insecure:
            argv.append("--insecure")
        return argv

    def _env(self, w: Worker) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
            LOADSVC_WORKER=str(w.index),
            LOADSVC_WORKER_PARENT=str(os.getpid()),
            LOADSVC_WORKER_URL_FILE=str(w.url_file),
        )
        return env

    async def _keep(self, w: Worker) -> None:
        """Run worker ``w`` until the pool stops; restart it with backoff when it exits."""
        while not self._stopping.is_set():
            w.url_file.unlink(missing_ok=True)
            w.url = None
            w.started = time.monotonic()
            w.proc = await asyncio.create_subprocess_exec(*self._argv(w), env=self._env(w))
            log.info("worker started", worker=w.index, pid=w.proc.pid, shard=str(w.shard))
            if self._stopping.is_set():  # stop() ran while it was being spawned
                self._signal(w, signal.SIGTERM)
            code = await w.proc.wait()
            mark_process_dead(w.proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
            w.url = None
            if self._stopping.is_set():
                log.info("worker stopped", worker=w.index, pid=w.proc.pid, code=code)
                return
            lived = time.monotonic() - w.started
            w.crashes = 0 if lived >= STABLE_S else w.crashes + 1
            delay = self.backoff.delay(w.crashes)
            w.restarts += 1
            log.error(
                "worker exited; restarting it",
                worker=w.index,
                pid=w.proc.pid,
                code=code,
                lived_s=round(lived, 1),
                restart_in_s=delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
