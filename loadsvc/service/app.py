"""``loadsvc serve``: the in-process service, its lifecycle (start, reload, shutdown) and wiring.

SIGTERM/SIGINT: stop triggering, stop every run (graceful, bounded by
``service.stop_timeout_s``), record their verdicts, close every connection,
exit 0. SIGHUP: reload the configuration file; an invalid one is rejected with
its errors logged and the running one stays (see :mod:`.supervisor` for what a
valid reload does to runs in progress). The signal loop is :mod:`.signals`'s and the
HTTP surface :mod:`.http`'s, both shared with the ``--workers`` front (:mod:`.front`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector

from loadsvc.config import ConfigError, load_config
from loadsvc.config.spec import Config
from loadsvc.environment import SettingsError, check_reachable
from loadsvc.files import write_atomically
from loadsvc.live import LiveVerdict
from loadsvc.loopmon import LoopLagMonitor
from loadsvc.metrics import (
    Metrics,
    create_build_info,
    create_metrics,
    latency_buckets,
    multiprocess_enabled,
)
from loadsvc.recorder import Recorder
from loadsvc.sampler import SeriesSampler
from loadsvc.selfmon import SelfHealthCollector
from loadsvc.service.front import serve_workers
from loadsvc.service.history import RunHistory, history_path_problem
from loadsvc.service.http import Action, ApiAuth, build_app
from loadsvc.service.readcache import exposition_in_slices
from loadsvc.service.scheduler import Now, ScenarioScheduler, utc_now
from loadsvc.service.settings import ServeRequest, ServeSettings, resolve_settings
from loadsvc.service.signals import serve_until_signalled
from loadsvc.service.status import generator_status, scenario_status, service_status
from loadsvc.service.supervisor import Supervisor
from loadsvc.service.workers import watch_parent
from loadsvc.verdict import tightest_trust_limit

log = structlog.get_logger("loadsvc.serve")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
HOUSEKEEPING_TICK_S = 1.0


class SoakService:
    """The always-on service: metrics, history, supervisor, scheduler and HTTP surface."""

    def __init__(
        self,
        settings: ServeSettings,
        config: Config,
        registry: CollectorRegistry | None = None,
        now: Now = utc_now,
    ) -> None:
        self.settings = settings
        self.config = config
        self.registry = registry or CollectorRegistry()
        multiprocess = multiprocess_enabled()  # a worker of `serve --workers N`
        self._multiprocess = multiprocess
        self._self_health: SelfHealthCollector | None = None
        self.metrics: Metrics = create_metrics(
            self.registry, config.latency_boundaries(), multiprocess=multiprocess, service=True
        )
        self._buckets = set(latency_buckets(config.latency_boundaries()))
        ProcessCollector(registry=self.registry)
        if settings.worker is None:  # a worker's front exports it with the replica's shard
            create_build_info(self.registry, str(settings.shard))
        svc = config.service
        self.history = RunHistory(
            settings.history_file or svc.history_file, svc.history_max_bytes, svc.history_max_age_s
        )
        self.recorder = Recorder(self.metrics)
        self.sampler = SeriesSampler()
        self.monitor = LoopLagMonitor(self.recorder)
        self.sampler.watch_lag(self.monitor)
        self.supervisor = Supervisor(
            settings.target, self.recorder, self.history, monitor=self.monitor, shard=settings.shard
        )
        self.scheduler = ScenarioScheduler(self.supervisor.fire, now=now)
        self.auth = ApiAuth(settings.api_token)
        self.started_at = time.time()
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP port, then start the scenarios and the scheduler (OSError if no port)."""
        runner = web.AppRunner(build_app(self, self.auth), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        self.url = f"http://{self.settings.host}:{port}"
        self.monitor.start()
        if not self._multiprocess:  # a worker's metrics reach the front as files, not collectors
            self._self_health = SelfHealthCollector(asyncio.get_running_loop(), self.registry)
        self._apply(self.config)
        self.scheduler.start()
        self._housekeeping = asyncio.get_running_loop().create_task(self._housekeep())
        if self.settings.worker is not None:  # tell the front which port 0 became
            write_atomically(Path(self.settings.worker.url_file), self.url.encode())
        if self.history.problem is not None:
            log.error(
                "the run history cannot be written; serving, but not ready until it can",
                problem=self.history.problem,
            )
        log.info(
            "serving",
            url=self.url,
            config=self.config.source,
            target=self.settings.target.base_url,
            shard=str(self.settings.shard),
            scenarios=self.supervisor.names(),
            history=str(self.history.path),
            control_api="enabled" if self.auth.enabled else "disabled (no LOADSVC_API_TOKEN)",
        )

    async def stop(self) -> int:
        """Stop triggering, end the runs within the stop timeout, close the port; exit code 0."""
        self._stopping = True
        self.scheduler.shutdown()
        began = time.monotonic()
        if self._reload_task is not None:
            self._reload_task.cancel()  # its thread finishes alone; its result is dropped
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload_task
        await self.supervisor.shutdown(self.config.service.stop_timeout_s)
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        self._log_failures()
        await self.monitor.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("stopped", took_s=round(time.monotonic() - began, 3))
        return EXIT_OK

    def request_reload(self) -> None:
        """SIGHUP: reload in the background; a SIGHUP during a reload queues one more."""
        if self._stopping:
            return
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True
            return
        self._reload_task = asyncio.get_running_loop().create_task(self._reload_until_settled())

    async def _reload_until_settled(self) -> None:
        self._reload_again = True
        while self._reload_again and not self._stopping:
            self._reload_again = False
            await self.reload()

    async def reload(self) -> bool:
        """Load the configuration file again; apply it if valid, else keep the running one.

        Reading, parsing and validating run in a worker thread: a large file must not
        stall the event loop that times frames and answers /healthz. Applying runs here.
        """
        if self._stopping:
            return False
        source = self.settings.config_path
        log.info("configuration reload started", source=source or "<default>")
        try:
            config = await asyncio.to_thread(load_config, source)
        except ConfigError as exc:
            self._reject(exc.source, str(exc).splitlines())
            return False
        except Exception as exc:  # a reload never takes the service down
            self._reject(source or "<default>", [f"{type(exc).__name__}: {exc}"])
            return False
        if self._stopping:
            return False
        missing = sorted(set(config.latency_boundaries()) - self._buckets)
        if missing:
            log.warning(
                "new latency thresholds are not histogram buckets until a restart",
                thresholds_s=missing,
            )
        self.config = config
        svc = config.service
        self.history.set_limits(svc.history_max_bytes, svc.history_max_age_s)
        changes = self._apply(config)
        self.recorder.config_reloaded(True)
        log.info("configuration reloaded", source=config.source, **changes)
        return True

    def _reject(self, source: str, errors: list[str]) -> None:
        self.recorder.config_reloaded(False)
        log.error(
            "configuration reload rejected; the running configuration stays",
            source=source,
            errors=errors,
        )

    def _apply(self, config: Config) -> dict[str, list[str]]:
        changes = self.supervisor.apply(config.scenarios)
        self.monitor.limit_s = tightest_trust_limit(s.thresholds for s in config.scenarios)
        self.scheduler.apply(config.scenarios)
        for name in changes["removed"]:
            self.recorder.next_run(name, None)
        self._refresh_next_runs()
        return changes

    # -- periodic work ---------------------------------------------------------

    async def _housekeep(self) -> None:
        loop = asyncio.get_running_loop()
        next_log = loop.time() + self.config.service.log_interval_s
        while True:
            # On the wall clock's seconds: the series' points are whole seconds, not drifting.
            await asyncio.sleep(HOUSEKEEPING_TICK_S - time.time() % HOUSEKEEPING_TICK_S)
            self._refresh_next_runs()
            self._sample_series()
            if loop.time() >= next_log:
                next_log = loop.time() + self.config.service.log_interval_s
                self._log_failures()
                self.history.prune()
                self.history.retry()  # after a write failure; not every tick (a full rewrite)

    def _refresh_next_runs(self) -> None:
        for name in self.supervisor.names():
            self.recorder.next_run(name, self._next_run(name))

    def _next_run(self, name: str) -> float | None:
        fire = self.scheduler.next_run(name)
        if fire is not None:
            return fire.timestamp()
        return self.supervisor.state(name).restart_at

    def _sample_series(self) -> None:
        """One look at every running scenario for the status page's charts."""
        names = self.supervisor.names()
        self.sampler.keep_only(names)
        self.sampler.sample_lag()
        for name in names:
            state = self.supervisor.state(name)
            stats = self.recorder.current.get(name)
            running = state.running and stats is not None
            if running and stats is not None:
                self.sampler.sample(stats, state.users)
            self.recorder.live_judged(name, self.sampler.live(name) if running else None)

    def _log_failures(self) -> None:
        """One line per scenario with its failures since the last one, by endpoint and reason."""
        by_scenario: dict[str, dict[str, int]] = defaultdict(dict)
        for (scenario, endpoint, reason), n in sorted(self.recorder.failures.drain().items()):
            by_scenario[scenario][f"{endpoint} {reason}"] = n
        for scenario, counts in by_scenario.items():
            log.warning(
                "failures",
                scenario=scenario,
                interval_s=self.config.service.log_interval_s,
                total=sum(counts.values()),
                counts=counts,
            )

    # -- ServiceApi ------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """Ready once the configuration is loaded and the scheduler runs; not while stopping."""
        if self._stopping:
            return False, "shutting down"
        if not self.scheduler.running:
            return False, "scheduler not running"
        if self.history.problem is not None:
            # Runs are measured, but their verdicts would be lost on a restart.
            return False, self.history.problem
        return True, ""

    async def exposition(self) -> bytes:
        """This process's metrics in the Prometheus text format (in slices: see readcache)."""
        if self._self_health is not None:  # its sockets counted off the loop first
            await self._self_health.prepare()
        return await exposition_in_slices(self.registry)

    async def readiness(self) -> tuple[bool, str]:
        """(ready, why not): see :meth:`ready`."""
        return self.ready()

    async def status(self) -> dict[str, Any]:
        """The ``/api/status`` document."""
        return {
            "service": service_status(
                config=self.config.source,
                target=self.settings.target.base_url,
                shard=str(self.settings.shard),
                started_at=self.started_at,
                ready=self.ready()[0],
                control_api=self.auth.enabled,
            ),
            "generator": generator_status(self.monitor.state),
            "scenarios": [
                scenario_status(
                    name, self.supervisor.state(name), self._next_run(name), self._live(name)
                )
                for name in self.supervisor.names()
            ],
        }

    def _live(self, name: str) -> LiveVerdict | None:
        """The live judgement of a running scenario (None when it is not running)."""
        return self.sampler.live(name) if self.supervisor.state(name).running else None

    async def runs(self, scenario: str | None, limit: int) -> list[dict[str, Any]]:
        """Recent finished runs and windows from the history, most recent first."""
        return self.history.recent(scenario, limit)

    async def series(self, scenario: str, since: float | None) -> dict[str, Any] | None:
        """A scenario's time series (empty before its first run); None if not configured."""
        if scenario not in self.supervisor.names():
            return None
        found = self.sampler.series.get(scenario)
        if found is None:
            return {"scenario": scenario, "endpoints": []}
        return found.to_doc(since)

    async def control(self, action: Action, name: str) -> tuple[int, dict[str, Any]]:
        """Start or stop a run of ``name`` now (202), or accept its new baseline (200)."""
        if action == "accept-baseline":
            return 200, self.supervisor.accept_baseline(name)
        if action == "run":
            run_id = self.supervisor.start(name)
            log.info("run requested through the API", scenario=name, run_id=run_id)
        else:
            run_id = self.supervisor.stop(name)
            log.info("stop requested through the API", scenario=name, run_id=run_id)
        return 202, {"scenario": name, "action": action, "run_id": run_id}


async def serve(settings: ServeSettings, config: Config) -> int:
    """Run the service until SIGTERM or SIGINT; SIGHUP reloads the configuration."""
    worker = settings.worker
    return await serve_until_signalled(
        SoakService(settings, config),
        host=settings.host,
        port=settings.port,
        # A worker of `serve --workers N` stops when its front is gone.
        watch=functools.partial(watch_parent, worker.parent_pid) if worker is not None else None,
    )


def run_serve(
    request: ServeRequest,
    run_async: Callable[[Callable[[], Coroutine[Any, Any, int]]], int],
) -> int:
    """``loadsvc serve``: validate everything before starting; exit 2 on bad input.

    An unreachable target does not stop the service (measuring it is the point):
    it is logged as a warning.
    """
    try:
        config = load_config(request.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = resolve_settings(request)
    except SettingsError as exc:
        print(f"loadsvc serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        check_reachable(settings.target, timeout=2.0)
    except SettingsError as exc:
        log.warning("target unreachable at start; serving anyway", error=str(exc))
    history = settings.history_file or config.service.history_file
    if settings.worker is None and (problem := history_path_problem(history)):
        print(f"loadsvc serve: --history-file {problem}", file=sys.stderr)
        return EXIT_USAGE
    if settings.workers > 1 and settings.worker is None:
        return run_async(lambda: serve_workers(settings, config, request))
    return run_async(lambda: serve(settings, config))
