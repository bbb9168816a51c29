"""Triggers: when scheduled scenarios fire, from an injected clock, and real firing on the loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from loadsvc.config import parse_config
from loadsvc.config.spec import ScheduleSpec
from loadsvc.service.scheduler import ScenarioScheduler, misfire_grace_s, next_fire_time
from tests.support import scaled
from tests.support.configs import config_text, scenario

MARKET_OPEN = ScheduleSpec(kind="cron", cron="0 9 * * mon-fri", timezone="Asia/Ho_Chi_Minh")


def at(text: str) -> datetime:
    """An instant in UTC from ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def config(schedule: str) -> str:
    """A one-scenario configuration with ``schedule``."""
    return config_text(scenario("s", schedule=schedule))


def test_market_open_fires_at_nine_in_ho_chi_minh_city() -> None:
    """Monday 08:59:59 in HCM (01:59:59 UTC) -> the next fire is 02:00:00 UTC that day."""
    fire = next_fire_time(MARKET_OPEN, at("2026-11-23 01:59:59"))
    assert fire is not None and fire.astimezone(UTC) == at("2026-11-23 02:00:00")
    assert fire.utcoffset() == timedelta(hours=7)
    # The instant itself is due (inclusive), as APScheduler treats it.
    assert next_fire_time(MARKET_OPEN, at("2026-11-23 02:00:00")) == fire


def test_market_open_skips_the_weekend() -> None:
    """From Saturday, and from Friday after the open, the next fire is Monday 09:00 HCM."""
    monday = at("2026-11-30 02:00:00")
    for now in ("2026-11-28 12:00:00", "2026-11-27 02:00:01", "2026-11-29 23:59:59"):
        fire = next_fire_time(MARKET_OPEN, at(now))
        assert fire is not None and fire.astimezone(UTC) == monday, now


def test_interval_fires_one_interval_after_now_and_continuous_never() -> None:
    """An interval schedule fires at the next multiple of itself; continuous and manual never."""
    now = at("2026-11-23 10:00:00")
    every = ScheduleSpec(kind="interval", every_s=900)
    assert next_fire_time(every, now) == now + timedelta(minutes=15)
    assert next_fire_time(ScheduleSpec(kind="continuous"), now) is None
    assert next_fire_time(ScheduleSpec(kind="manual"), now) is None


def test_misfire_grace_is_bounded() -> None:
    """A cron run may start up to 60 s late; an interval run up to half its interval, <= 60 s."""
    assert misfire_grace_s(MARKET_OPEN) == 60
    assert misfire_grace_s(ScheduleSpec(kind="interval", every_s=900)) == 60
    assert misfire_grace_s(ScheduleSpec(kind="interval", every_s=10)) == 5
    assert misfire_grace_s(ScheduleSpec(kind="interval", every_s=1)) == 1


def test_scheduler_reports_next_runs_from_the_injected_clock() -> None:
    """Jobs take their first fire time from the injected now; a reapply keeps unchanged ones."""
    now = at("2026-11-23 01:59:59")
    clock = [now]
    scheduler = ScenarioScheduler(lambda _: None, now=lambda: clock[0])
    cron = parse_config(config('{kind: cron, cron: "0 9 * * mon-fri", timezone: Asia/Ho_Chi_Minh}'))
    scheduler.apply(cron.scenarios)
    assert scheduler.next_run("s") == at("2026-11-23 02:00:00")

    clock[0] = at("2026-11-23 05:00:00")
    scheduler.apply(cron.scenarios)  # unchanged: keeps its next fire time
    assert scheduler.next_run("s") == at("2026-11-23 02:00:00")

    scheduler.apply(parse_config(config("{kind: interval, every: 15m}")).scenarios)
    assert scheduler.next_run("s") == at("2026-11-23 05:15:00")

    scheduler.apply(parse_config(config("{kind: continuous}")).scenarios)
    assert scheduler.next_run("s") is None


async def test_scheduler_fires_on_the_event_loop_and_stops_at_shutdown() -> None:
    """A 1 s interval fires fire(name) on the loop; after shutdown() nothing fires."""
    fired: list[str] = []
    got = asyncio.Event()

    def fire(name: str) -> None:
        fired.append(name)
        got.set()

    scheduler = ScenarioScheduler(fire)
    scheduler.apply(parse_config(config("{kind: interval, every: 1s}")).scenarios)
    scheduler.start()
    assert scheduler.running
    try:
        await asyncio.wait_for(got.wait(), 5)
        assert fired == ["s"]
        first = scheduler.next_run("s")
        assert first is not None and first > datetime.now(UTC) - timedelta(seconds=1)
    finally:
        scheduler.shutdown()
    assert not scheduler.running
    fired_before = len(fired)
    # The absence of a fire is only seen over time: a span of two intervals, not a condition.
    await asyncio.sleep(scaled(2.0))
    assert len(fired) == fired_before, "the scheduler fired after shutdown()"
