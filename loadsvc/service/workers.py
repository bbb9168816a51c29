"""``loadsvc serve --workers N``: a thin front over N worker processes on one machine.

One Python process drives one core. With ``--workers N`` the process that was
started becomes a *front* that generates no load itself:

- It starts N workers, each a normal ``loadsvc serve`` bound to 127.0.0.1
  port 0 with sub-shard ``i*N+k`` of ``n*N`` (worker k of replica shard i/n),
  so every scenario's users still add up exactly over workers and replicas.
- Workers keep their metric values in files (prometheus-client's multiprocess
  mode, ``PROMETHEUS_MULTIPROC_DIR`` set to a fresh directory in their
  environment before they import anything); the front's ``/metrics`` merges
  them with ``MultiProcessCollector`` (gauges as :data:`loadsvc.metrics.GAUGE_MERGE`
  says) and adds ``loadsvc_build_info`` with the replica's shard.
- It owns the public port: ``/healthz``; ``/readyz`` (every worker ready);
  ``/api/status`` (worker 0's document, users summed over workers, plus a
  ``workers`` list); ``/api/runs`` (every worker's history, merged); and the
  control endpoints, fanned out to every worker with the caller's token.
- It supervises: a worker that exits is restarted with a growing delay, and
  its live gauges are dropped (``mark_process_dead``). SIGTERM/SIGINT stop
  every worker (SIGKILL after the stop timeout), SIGHUP is forwarded (each
  worker reloads the configuration). The directory is removed on exit.

A worker whose front disappeared (killed with SIGKILL) notices its new
parent and stops itself (:func:`watch_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from loadsvc.config.spec import Config
from loadsvc.metrics import create_build_info
from loadsvc.runner import Shard
from loadsvc.service.settings import ServeRequest, ServeSettings
from loadsvc.service.supervisor import RestartBackoff

log = structlog.get_logger("loadsvc.workers")

EXIT_OK = 0
EXIT_FAILED = 1
STABLE_S = 30.0  # a worker that lived this long starts its restart backoff afresh
KILL_GRACE_S = 10.0  # beyond the configured stop timeout, before SIGKILL
PARENT_CHECK_S = 1.0
FAN_OUT_TIMEOUT_S = 10.0
MERGED_MAX_RUNS = 1000
WORKER_BACKOFF = RestartBackoff(initial_s=1.0, max_s=30.0)
# Worker environment: never inherit a shard, a worker count or another multiprocess directory.
_DROPPED_ENV = ("LOADSVC_SHARD", "LOADSVC_SHARDS", "LOADSVC_WORKERS", "prometheus_multiproc_dir")


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


@dataclass
class _Worker:
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


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


class WorkerFront:
    """The front of ``serve --workers N``: one public port over N supervised workers."""

    def __init__(
        self,
        settings: ServeSettings,
        config: Config,
        request: ServeRequest,
        backoff: RestartBackoff = WORKER_BACKOFF,
    ) -> None:
        self.settings = settings
        self.config = config
        self.request = request
        self.backoff = backoff
        self.workdir = Path(tempfile.mkdtemp(prefix="loadsvc-workers-"))
        self.metrics_dir = self.workdir / "metrics"
        self.metrics_dir.mkdir()
        self.registry = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(self.registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        create_build_info(self.registry, str(settings.shard))
        self.workers = [
            _Worker(
                k, worker_shard(settings.shard, settings.workers, k), self.workdir / f"w{k}.url"
            )
            for k in range(settings.workers)
        ]
        self.started_at = time.time()
        self.url: str | None = None
        self._stopping = asyncio.Event()
        self._keepers: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the public port, then start the workers (OSError if the port is taken)."""
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.settings.host, self.settings.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.url = f"http://{self.settings.host}:{runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession(
            trust_env=False, timeout=aiohttp.ClientTimeout(total=FAN_OUT_TIMEOUT_S)
        )
        loop = asyncio.get_running_loop()
        self._keepers = [loop.create_task(self._keep(w)) for w in self.workers]
        log.info(
            "serving",
            url=self.url,
            role="front",
            shard=str(self.settings.shard),
            workers=[str(w.shard) for w in self.workers],
            metrics_dir=str(self.metrics_dir),
        )

    async def stop(self) -> int:
        """SIGTERM every worker, SIGKILL what outlives the stop timeout, clean up; exit code."""
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
        codes = [w.proc.returncode for w in self.workers if w.proc is not None]
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)
        log.info("stopped", role="front", worker_exit_codes=codes)
        return EXIT_OK if all(c == 0 for c in codes) else EXIT_FAILED

    def reload(self) -> None:
        """SIGHUP: every worker reloads the configuration file."""
        log.info("forwarding SIGHUP to the workers")
        for w in self.workers:
            self._signal(w, signal.SIGHUP)

    @staticmethod
    def _signal(w: _Worker, signum: signal.Signals) -> None:
        if w.proc is not None and w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signum)  # by its PID

    # -- supervision -----------------------------------------------------------

    def _argv(self, w: _Worker) -> list[str]:
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

    def _env(self, w: _Worker) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
            LOADSVC_WORKER=str(w.index),
            LOADSVC_WORKER_PARENT=str(os.getpid()),
            LOADSVC_WORKER_URL_FILE=str(w.url_file),
        )
        return env

    async def _keep(self, w: _Worker) -> None:
        """Run worker ``w`` until the front stops; restart it with backoff when it exits."""
        while not self._stopping.is_set():
            w.url_file.unlink(missing_ok=True)
            w.url = None
            w.started = time.monotonic()
            w.proc = await asyncio.create_subprocess_exec(*self._argv(w), env=self._env(w))
            log.info("worker started", worker=w.index, pid=w.proc.pid, shard=str(w.shard))
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

    # -- fan-out ---------------------------------------------------------------

    async def _ask(
        self, w: _Worker, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any] | None:
        """(status, JSON body) of one request to worker ``w``; None if it cannot answer."""
        url = w.base_url()
        if url is None or self._session is None:
            return None
        try:
            async with self._session.request(method, url + path, headers=headers) as resp:
                return resp.status, orjson.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            return None

    async def _ask_all(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> list[tuple[int, Any] | None]:
        return list(
            await asyncio.gather(*(self._ask(w, method, path, headers) for w in self.workers))
        )

    async def readiness(self) -> tuple[bool, str]:
        """Ready when every worker answers ``/readyz`` 200; not while stopping."""
        if self._stopping.is_set():
            return False, "shutting down"
        for w, answer in zip(self.workers, await self._ask_all("GET", "/readyz"), strict=True):
            if answer is None or answer[0] != 200:
                why = "not started" if answer is None else answer[1].get("reason", answer[1])
                return False, f"worker {w.index}: {why}"
        return True, ""

    async def status(self) -> dict[str, Any]:
        """Worker 0's status document (the first that answers), users summed over workers."""
        docs = [a[1] for a in await self._ask_all("GET", "/api/status") if a and a[0] == 200]
        ready, _ = await self.readiness()
        doc: dict[str, Any] = docs[0] if docs else {"service": {}, "scenarios": []}
        by_name: dict[str, list[dict[str, Any]]] = {}
        for d in docs:
            for sc in d.get("scenarios", []):
                by_name.setdefault(sc["name"], []).append(sc)
        for sc in doc["scenarios"]:
            mine = by_name.get(sc["name"], [sc])
            sc["users"] = sum(int(s.get("users") or 0) for s in mine)
            for flag in ("running", "stopping", "held"):
                sc[flag] = any(bool(s.get(flag)) for s in mine)
        doc["service"].update(
            shard=str(self.settings.shard),
            started_at=datetime.fromtimestamp(self.started_at, UTC).isoformat(),
            ready=ready,
            workers=[w.describe() for w in self.workers],
        )
        return doc

    # -- HTTP ------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()

        async def metrics(_: web.Request) -> web.Response:
            body = await asyncio.to_thread(generate_latest, self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def healthz(_: web.Request) -> web.Response:
            return _json({"status": "ok"})

        async def readyz(_: web.Request) -> web.Response:
            ready, why = await self.readiness()
            if ready:
                return _json({"status": "ready"})
            return _json({"status": "not ready", "reason": why}, status=503)

        async def status(_: web.Request) -> web.Response:
            return _json(await self.status())

        async def runs(request: web.Request) -> web.Response:
            answers = await self._ask_all("GET", request.path_qs)
            got = [a for a in answers if a is not None]
            if not got:
                return _json({"error": "no worker answered"}, status=503)
            if got[0][0] != 200:
                return _json(got[0][1], status=got[0][0])
            merged = [r for status, body in got if status == 200 for r in body["runs"]]
            merged.sort(key=lambda r: float(r.get("ended_at") or 0), reverse=True)
            limit = min(MERGED_MAX_RUNS, int(request.query.get("limit", "50")))
            return _json({"runs": merged[:limit], "count": len(merged[:limit])})

        async def control(request: web.Request) -> web.Response:
            auth = request.headers.get("Authorization")
            headers = {"Authorization": auth} if auth else None
            answers = await self._ask_all("POST", request.path, headers)
            got = [a for a in answers if a is not None]
            if not got:
                return _json({"error": "no worker answered"}, status=503)
            accepted = any(status == 202 for status, _ in got)
            body = dict(got[0][1]) if isinstance(got[0][1], dict) else {"answer": got[0][1]}
            body["workers"] = [
                {"index": w.index, "status": a[0] if a else None, "answer": a[1] if a else None}
                for w, a in zip(self.workers, answers, strict=True)
            ]
            return _json(body, status=202 if accepted else got[0][0])

        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/api/status", status)
        app.router.add_get("/api/runs", runs)
        app.router.add_post("/api/scenarios/{name}/run", control)
        app.router.add_post("/api/scenarios/{name}/stop", control)
        return app


async def serve_workers(settings: ServeSettings, config: Config, request: ServeRequest) -> int:
    """Run the front and its workers until SIGTERM or SIGINT; SIGHUP is forwarded."""
    front = WorkerFront(settings, config, request)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    try:
        await front.start()
    except OSError as exc:
        shutil.rmtree(front.workdir, ignore_errors=True)
        log.error("cannot listen", host=settings.host, port=settings.port, error=str(exc))
        return EXIT_FAILED

    def on_stop(signame: str) -> None:
        if not done.is_set():
            log.info("shutting down", signal=signame, role="front")
        done.set()

    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, AttributeError):
            if sig == signal.SIGHUP:
                loop.add_signal_handler(sig, front.reload)
            else:
                loop.add_signal_handler(sig, on_stop, sig.name)
            installed.append(sig)
    try:
        await done.wait()
    finally:
        code = await front.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)
    return code
