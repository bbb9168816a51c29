"""Interval schedules fire on the wall-clock grid, so replicas started apart fire together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loadsvc.config import parse_config
from loadsvc.config.spec import ScheduleSpec
from loadsvc.service.scheduler import ScenarioScheduler, build_trigger, next_fire_time
from tests.support.configs import config_text, scenario

EVERY_15M = ScheduleSpec(kind="interval", every_s=900)


def at(text: str) -> datetime:
    """An instant in UTC from ``YYYY-MM-DD HH:MM:SS[.ffffff]``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(schedule: ScheduleSpec, started: datetime, count: int) -> list[datetime]:
    """The first ``count`` fire times of a replica whose scheduler started at ``started``."""
    trigger = build_trigger(schedule, started)
    assert trigger is not None
    out: list[datetime] = []
    previous = None
    now = started
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        out.append(fire.astimezone(UTC))
        previous, now = fire, fire
    return out


def test_replicas_started_apart_fire_at_the_same_quarter_hour() -> None:
    """Every 15m from 10:03:17 and from 10:11:59.5 -> both fire at 10:15, 10:30, 10:45, 11:00."""
    quarter_hours = [at("2026-11-23 10:15:00") + timedelta(minutes=15 * k) for k in range(4)]
    assert fires(EVERY_15M, at("2026-11-23 10:03:17"), 4) == quarter_hours
    assert fires(EVERY_15M, at("2026-11-23 10:11:59.5"), 4) == quarter_hours


def test_a_start_on_the_grid_waits_for_the_next_point() -> None:
    """Started exactly at 10:15:00 the first fire is 10:30:00 (strictly after the start)."""
    assert next_fire_time(EVERY_15M, at("2026-11-23 10:15:00")) == at("2026-11-23 10:30:00")


def test_an_interval_that_does_not_divide_an_hour_is_a_multiple_since_the_epoch() -> None:
    """Every 7m: any start gives a fire on a whole multiple of 420 s since 1970-01-01 UTC."""
    seven = ScheduleSpec(kind="interval", every_s=420)
    for start in ("2026-11-23 10:00:00", "2026-11-23 10:03:00", "2026-11-23 23:59:59.999999"):
        fire = next_fire_time(seven, at(start))
        assert fire is not None and fire.timestamp() % 420 == 0, start
        assert timedelta(0) < fire - at(start) <= timedelta(seconds=420), start


def test_two_schedulers_with_different_clocks_report_the_same_next_run() -> None:
    """Two ScenarioSchedulers (replicas) whose injected clocks differ by 9 min agree on :15."""
    config = parse_config(config_text(scenario("storm", schedule="{kind: interval, every: 15m}")))
    early = ScenarioScheduler(lambda _: None, now=lambda: at("2026-11-23 10:02:00"))
    late = ScenarioScheduler(lambda _: None, now=lambda: at("2026-11-23 10:11:00"))
    for replica in (early, late):
        replica.apply(config.scenarios)
    assert early.next_run("storm") == late.next_run("storm") == at("2026-11-23 10:15:00")
