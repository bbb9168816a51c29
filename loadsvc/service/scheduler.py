"""Triggers: when scheduled scenarios start. Never load (the supervisor owns runs).

APScheduler 3's ``AsyncIOScheduler`` fires one job per ``interval``/``cron``
scenario; the job only calls ``fire(name)``, which starts a run or skips it, so
APScheduler never holds a run open and its ``max_instances`` never matters.
``continuous`` and ``manual`` scenarios have no job.

Misfires and coalescing are set on purpose:

- ``coalesce=True``: after the loop or the host stalled past several fire times,
  one run, not a burst of back-to-back runs (which would be skipped anyway).
- ``misfire_grace_time``: a cron run (the 09:00 market open) still starts up to
  60 s late, later than that it would test something else and is dropped; an
  interval run may be up to half its interval (at most 60 s) late.

Interval schedules are aligned to the wall clock: ``every: 15m`` fires at
:00, :15, :30 and :45 (multiples of the interval since the Unix epoch, UTC),
never "start + 15m", so replicas started at different moments fire together
(cron schedules do by nature).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from loadsvc.config.spec import ScenarioSpec, ScheduleSpec

log = structlog.get_logger("loadsvc.scheduler")

CRON_MISFIRE_GRACE_S = 60
MAX_INTERVAL_MISFIRE_GRACE_S = 60

Now = Callable[[], datetime]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def aligned_fire(every_s: float, now: datetime) -> datetime:
    """The first multiple of ``every_s`` seconds since the Unix epoch strictly after ``now``.

    Whole microseconds throughout, so every replica computes the same instant.
    """
    every_us = max(1, round(every_s * 1_000_000))
    now_us = (now.astimezone(UTC) - EPOCH) // _MICROSECOND
    return EPOCH + timedelta(microseconds=(now_us // every_us + 1) * every_us)


def build_trigger(schedule: ScheduleSpec, now: datetime) -> BaseTrigger | None:
    """The APScheduler trigger of a schedule; None for ``continuous`` and ``manual``.

    An interval's first fire is the next wall-clock multiple of the interval
    after ``now`` (:func:`aligned_fire`), and every later one is too.
    """
    if schedule.kind == "cron":
        assert schedule.cron is not None  # validated by the config loader
        return CronTrigger.from_crontab(schedule.cron, timezone=ZoneInfo(schedule.timezone))
    if schedule.kind == "interval":
        assert schedule.every_s is not None
        start = aligned_fire(schedule.every_s, now)
        return IntervalTrigger(seconds=schedule.every_s, start_date=start, timezone=UTC)
    return None


def next_fire_time(schedule: ScheduleSpec, now: datetime) -> datetime | None:
    """When a schedule next fires at or after ``now`` (a pure function of the two)."""
    trigger = build_trigger(schedule, now)
    if trigger is None:
        return None
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    return fire


def misfire_grace_s(schedule: ScheduleSpec) -> int:
    """How late (whole seconds) a fire may still start a run."""
    if schedule.kind == "interval" and schedule.every_s is not None:
        return max(1, min(MAX_INTERVAL_MISFIRE_GRACE_S, math.floor(schedule.every_s / 2)))
    return CRON_MISFIRE_GRACE_S


class _ToStructlog(logging.Handler):
    """APScheduler logs through stdlib logging; forward its errors as structlog lines.

    Its warnings are left out: a missed run is logged by ``_missed`` with structure.
    """

    def emit(self, record: logging.LogRecord) -> None:
        log.log(record.levelno, record.getMessage(), source=record.name)


def _apscheduler_logger() -> logging.Logger:
    logger = logging.getLogger("loadsvc.apscheduler")
    if not logger.handlers:
        logger.addHandler(_ToStructlog())
        logger.setLevel(logging.ERROR)
        logger.propagate = False
    return logger


class ScenarioScheduler:
    """Fires ``fire(name)`` when each scheduled scenario is due.

    ``now`` is injected: it sets each job's first fire time and the next fire
    times reported, so tests can ask "from this instant, when?" without waiting.
    """

    def __init__(self, fire: Callable[[str], None], now: Now = utc_now) -> None:
        self._fire = fire
        self._now = now
        self._schedules: dict[str, ScheduleSpec] = {}
        self._closed = False
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            logger=_apscheduler_logger(),
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self._scheduler.add_listener(self._missed, EVENT_JOB_MISSED)

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``shutdown()``."""
        return bool(self._scheduler.running) and not self._closed

    def start(self) -> None:
        """Start firing (needs a running event loop)."""
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop firing at once; nothing fires after this returns."""
        self._closed = True
        if self._scheduler.running:
            self._scheduler.pause()
            self._scheduler.shutdown(wait=False)

    def apply(self, scenarios: Iterable[ScenarioSpec]) -> None:
        """Schedule exactly these scenarios; an unchanged schedule keeps its next fire time."""
        wanted = {s.name: s.schedule for s in scenarios if s.schedule.kind in ("interval", "cron")}
        for name in list(self._schedules):
            if wanted.get(name) != self._schedules[name]:
                self._scheduler.remove_job(name)
                del self._schedules[name]
        now = self._now()
        for name, schedule in wanted.items():
            if name in self._schedules:
                continue
            trigger = build_trigger(schedule, now)
            assert trigger is not None
            self._scheduler.add_job(
                self._job,
                trigger,
                args=(name,),
                id=name,
                name=f"{name} ({schedule.describe()})",
                misfire_grace_time=misfire_grace_s(schedule),
                coalesce=True,
                max_instances=1,
                next_run_time=trigger.get_next_fire_time(None, now),
            )
            self._schedules[name] = schedule

    def next_run(self, name: str) -> datetime | None:
        """When ``name`` next fires (UTC), or None when it has no schedule."""
        if name not in self._schedules:
            return None
        job = self._scheduler.get_job(name)
        when: datetime | None = None if job is None else getattr(job, "next_run_time", None)
        return None if when is None else when.astimezone(UTC)

    async def _job(self, name: str) -> None:
        # A coroutine, so AsyncIOExecutor runs it on the loop rather than in a thread.
        if not self._closed:
            self._fire(name)

    def _missed(self, event: Any) -> None:
        if isinstance(event, JobExecutionEvent):
            log.warning(
                "scheduled run missed (too late to start)",
                scenario=event.job_id,
                due=event.scheduled_run_time.astimezone(UTC).isoformat(),
            )
