"""``loadsvc serve --workers N``: a thin front over N worker processes on one machine.

One Python process drives one core. With ``--workers N`` the process that was
started becomes a *front* that generates no load itself: it runs a
:class:`~loadsvc.service.workers.WorkerPool` and serves the same HTTP surface
as ``serve`` (:mod:`.http`) by asking its workers and merging (:mod:`.merge`):

- ``/metrics``: the workers' metric files merged with ``MultiProcessCollector``
  (gauges as :data:`loadsvc.metrics.GAUGE_MERGE` says), plus
  ``loadsvc_build_info`` with the replica's shard;
- ``/readyz``: every worker ready; ``/api/status``: worker 0's document, users
  summed over workers, plus a ``workers`` list; ``/api/runs``: every worker's
  history, merged;
- the control endpoints, checked here and fanned out to every worker.

SIGTERM/SIGINT stop every worker (SIGKILL after the stop timeout); SIGHUP is
forwarded (each worker reloads the configuration). The directory of the
workers' files is removed on exit.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from loadsvc.config.spec import Config
from loadsvc.metrics import create_build_info
from loadsvc.service.http import Action, ApiAuth, build_app
from loadsvc.service.merge import (
    Answer,
    NoWorkerAnswered,
    merge_control,
    merge_readiness,
    merge_runs,
    merge_status,
)
from loadsvc.service.settings import ServeRequest, ServeSettings
from loadsvc.service.signals import serve_until_signalled
from loadsvc.service.workers import Worker, WorkerPool, stopped_cleanly

log = structlog.get_logger("loadsvc.workers")

EXIT_OK = 0
EXIT_FAILED = 1
FAN_OUT_TIMEOUT_S = 10.0


class WorkerFront:
    """The front of ``serve --workers N``: one public port over a pool of workers."""

    def __init__(self, settings: ServeSettings, config: Config, request: ServeRequest) -> None:
        self.settings = settings
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix="loadsvc-workers-"))
        self.metrics_dir = self.workdir / "metrics"
        self.metrics_dir.mkdir()
        self.registry = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(self.registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        create_build_info(self.registry, str(settings.shard))
        self.pool = WorkerPool(settings, config, request, self.workdir, self.metrics_dir)
        self.auth = ApiAuth(settings.api_token)
        self.started_at = time.time()
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def workers(self) -> list[Worker]:
        """The pool's worker slots, in index order."""
        return self.pool.workers

    # -- lifecycle (signals.Served) --------------------------------------------

    async def start(self) -> None:
        """Open the public port, then start the workers (OSError if the port is taken)."""
        runner = web.AppRunner(build_app(self, self.auth), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.settings.host, self.settings.port).start()
        except BaseException:
            await runner.cleanup()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self._runner = runner
        self.url = f"http://{self.settings.host}:{runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession(
            trust_env=False, timeout=aiohttp.ClientTimeout(total=FAN_OUT_TIMEOUT_S)
        )
        self.pool.start()
        log.info(
            "serving",
            url=self.url,
            role="front",
            shard=str(self.settings.shard),
            workers=[str(w.shard) for w in self.workers],
            metrics_dir=str(self.metrics_dir),
        )

    async def stop(self) -> int:
        """Stop every worker, close the port, remove the files; the exit code."""
        codes = await self.pool.stop()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)
        log.info("stopped", role="front", worker_exit_codes=codes)
        return EXIT_OK if stopped_cleanly(codes) else EXIT_FAILED

    def request_reload(self) -> None:
        """SIGHUP: every worker reloads the configuration file."""
        self.pool.reload()

    # -- fan-out ---------------------------------------------------------------

    async def _ask(
        self, w: Worker, method: str, path: str, headers: dict[str, str] | None = None
    ) -> Answer:
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
    ) -> list[Answer]:
        return list(
            await asyncio.gather(*(self._ask(w, method, path, headers) for w in self.workers))
        )

    # -- ServiceApi ------------------------------------------------------------

    async def exposition(self) -> bytes:
        """The workers' metrics merged (reading their files off the event loop)."""
        return await asyncio.to_thread(generate_latest, self.registry)

    async def readiness(self) -> tuple[bool, str]:
        """Ready when every worker answers ``/readyz`` 200; not while stopping."""
        if self.pool.stopping:
            return False, "shutting down"
        answers = await self._ask_all("GET", "/readyz")
        return merge_readiness([w.index for w in self.workers], answers)

    async def status(self) -> dict[str, Any]:
        """Worker 0's status document (the first that answers), users summed over workers."""
        answers = await self._ask_all("GET", "/api/status")
        ready, _ = await self.readiness()
        return merge_status(
            answers,
            shard=str(self.settings.shard),
            started_at=self.started_at,
            ready=ready,
            workers=[w.describe() for w in self.workers],
        )

    async def runs(self, scenario: str | None, limit: int) -> list[dict[str, Any]]:
        """Every worker's recent runs merged, most recent first."""
        query = {"limit": str(limit)} | ({"scenario": scenario} if scenario else {})
        answers = await self._ask_all("GET", "/api/runs?" + urlencode(query))
        return merge_runs(answers, limit)

    async def series(self, scenario: str, since: float | None) -> dict[str, Any] | None:
        """Worker 0's series (the first that answers): one shard's share of the load.

        Merging quantiles across workers would need their histograms; the shape
        over time is the same on every worker, and Prometheus has the merged numbers.
        """
        query = {"scenario": scenario} | ({"since": str(since)} if since is not None else {})
        answers = await self._ask_all("GET", "/api/series?" + urlencode(query))
        for answer in answers:
            if answer is not None and answer[0] == 200:
                return {**answer[1], "workers": len(self.workers), "of_worker": True}
        if any(a is not None and a[0] == 404 for a in answers):
            return None
        raise NoWorkerAnswered()

    async def control(self, action: Action, name: str) -> tuple[int, dict[str, Any]]:
        """Fan the run/stop out to every worker (already authorised here, so with our token)."""
        token = self.settings.api_token
        headers = {"Authorization": f"Bearer {token}"} if token else None
        path = f"/api/scenarios/{quote(name, safe='')}/{action}"
        answers = await self._ask_all("POST", path, headers)
        return merge_control([w.index for w in self.workers], answers)


async def serve_workers(settings: ServeSettings, config: Config, request: ServeRequest) -> int:
    """Run the front and its workers until SIGTERM or SIGINT; SIGHUP is forwarded."""
    front = WorkerFront(settings, config, request)
    return await serve_until_signalled(
        front, host=settings.host, port=settings.port, log_fields={"role": "front"}
    )
