"""Reading one scenario: its schedule, load shape, users and thresholds."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from apscheduler.triggers.cron import CronTrigger

from loadsvc.config._baseline import BaselineOverrides, read_baseline, resolve_baseline
from loadsvc.config._data import check_templates, read_data
from loadsvc.config._login import read_login
from loadsvc.config._nodes import Fields, Reader
from loadsvc.config._thresholds import (
    EndpointOverrides,
    ThresholdOverrides,
    read_thresholds,
    resolve_thresholds,
)
from loadsvc.config._users import EndpointUse, read_users
from loadsvc.config._values import duration, integer, join, line_of, nullable, number, text
from loadsvc.config.spec import (
    ConstantShapeSpec,
    RampingShapeSpec,
    ScenarioSpec,
    ScheduleSpec,
    ShapeSpec,
    Stage,
    Thresholds,
)

__all__ = ["SCENARIO_NAME", "Defaults", "read_scenario"]

SCENARIO_NAME = re.compile(r"[a-z][a-z0-9_]*")

_SCENARIO_KEYS = (
    "description",
    "schedule",
    "shape",
    "users",
    "thresholds",
    "baseline",
    "graceful_stop",
    "data",
    "login",
)
_SCHEDULE_KEYS: dict[str, tuple[str, ...]] = {
    "continuous": ("kind", "verdict_every"),
    "interval": ("kind", "every"),
    "cron": ("kind", "cron", "timezone"),
    "manual": ("kind",),
}
_SHAPE_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("kind", "users", "duration", "spawn_rate"),
    "ramping": ("kind", "start_users", "stages"),
}


@dataclass(frozen=True)
class Defaults:
    """What ``defaults`` sets for every scenario."""

    thresholds: ThresholdOverrides = field(default_factory=ThresholdOverrides)
    baseline: BaselineOverrides = field(default_factory=BaselineOverrides)


def read_scenario(
    reader: Reader,
    name: str,
    key_node: yaml.Node,
    node: yaml.Node,
    path: str,
    defaults: Defaults,
) -> ScenarioSpec | None:
    """Read the scenario ``name``; None when it is too broken to build (issues are reported)."""
    if not SCENARIO_NAME.fullmatch(name):
        reader.error(
            path,
            key_node,
            f"invalid scenario name {name!r}: use lower-case letters, digits and '_', "
            "starting with a letter",
        )
    fields = reader.mapping(node, path, _SCENARIO_KEYS, context="in a scenario")
    if fields is None:
        return None
    description = fields.get("description", text(nonempty=False), ScenarioSpec.description)
    schedule_node = fields.value_node("schedule")
    schedule = (
        ScheduleSpec()
        if schedule_node is None
        else _schedule(reader, schedule_node, fields.at("schedule"))
    )
    shape_node = fields.require("shape")
    shape = None if shape_node is None else _shape(reader, shape_node, fields.at("shape"))
    graceful_stop = fields.get(
        "graceful_stop", duration(allow_zero=True), ScenarioSpec.graceful_stop_s
    )

    data_node = fields.value_node("data")
    peak = shape.peak() if shape is not None else None
    data = None if data_node is None else read_data(reader, data_node, fields.at("data"), peak)

    issues_before_users = len(reader.issues)
    templates_before_users = len(reader.templates)
    users_node = fields.require("users")
    users, uses = (
        ((), ()) if users_node is None else read_users(reader, users_node, fields.at("users"))
    )
    if data_node is None or data is not None:  # a broken data section is reported already
        check_templates(reader, templates_before_users, data, f"{fields.at('data')}")
    users_clean = users_node is not None and len(reader.issues) == issues_before_users
    login_node = fields.value_node("login")
    login = None
    if login_node is not None:
        login_uses = list(uses)
        login = read_login(reader, login_node, fields.at("login"), data, login_uses)
        uses = tuple(login_uses)
        _check_login_label(reader, uses)
    _check_protocol_clashes(reader, uses)

    overrides = ThresholdOverrides()
    endpoint_overrides: tuple[EndpointOverrides, ...] = ()
    thresholds_node = fields.value_node("thresholds")
    if thresholds_node is not None:
        overrides, endpoint_overrides = read_thresholds(
            reader, thresholds_node, fields.at("thresholds"), per_scenario=True
        )
    known = list(dict.fromkeys(use.endpoint for use in uses)) if users_clean else None
    thresholds = resolve_thresholds(
        reader, defaults.thresholds.apply(Thresholds()), overrides, endpoint_overrides, known
    )
    own_baseline = read_baseline(reader, fields.value_node("baseline"), fields.at("baseline"))
    if shape is None or schedule is None:
        return None
    baseline = resolve_baseline(
        reader,
        defaults.baseline,
        own_baseline,
        schedule.kind,
    )
    return ScenarioSpec(
        name=name,
        shape=shape,
        users=users,
        schedule=schedule,
        thresholds=thresholds,
        description=description,
        graceful_stop_s=graceful_stop,
        baseline=baseline,
        data=data,
        login=login,
    )


def _check_login_label(reader: Reader, uses: tuple[EndpointUse, ...]) -> None:
    """The login's endpoint is its own: a task measured under the same label would mix them."""
    login = uses[-1]
    for use in uses[:-1]:
        if use.endpoint == login.endpoint:
            reader.error(
                use.path,
                use.node,
                f"endpoint {use.endpoint!r} is the login's (line {line_of(login.node)}); "
                "give this one or the login a distinct 'name'",
            )


def _check_protocol_clashes(reader: Reader, uses: tuple[EndpointUse, ...]) -> None:
    """One endpoint label, one protocol: metrics of HTTP and WS must not share a label."""
    first: dict[str, EndpointUse] = {}
    for use in uses:
        earlier = first.setdefault(use.endpoint, use)
        if earlier.protocol != use.protocol:
            other = "an HTTP task" if earlier.protocol == "http" else "a WS user"
            reader.error(
                use.path,
                use.node,
                f"endpoint {use.endpoint!r} is already used by {other} "
                f"(line {line_of(earlier.node)}); give one of them a distinct 'name'",
            )


def _schedule(reader: Reader, node: yaml.Node, path: str) -> ScheduleSpec | None:
    read = reader.variant(node, path, _SCHEDULE_KEYS, "schedule")
    if read is None:
        return None
    kind, fields = read
    if kind == "continuous":
        verdict_every = fields.get("verdict_every", duration(), ScheduleSpec.verdict_every_s)
        return ScheduleSpec(kind="continuous", verdict_every_s=verdict_every)
    if kind == "interval":
        every = fields.get("every", duration(), required=True)
        return ScheduleSpec(kind="interval", every_s=every)
    if kind == "cron":
        return _cron_schedule(fields)
    return ScheduleSpec(kind="manual")


def _cron_schedule(fields: Fields) -> ScheduleSpec:
    reader = fields.reader
    expression = fields.get("cron", text(), required=True)
    timezone_name = fields.get("timezone", text(), ScheduleSpec.timezone)
    zone: ZoneInfo | None = None
    try:
        zone = ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        reader.error(
            fields.at("timezone"),
            fields.value_node("timezone") or fields.node,
            f"unknown time zone {timezone_name!r}; use an IANA name such as 'Asia/Ho_Chi_Minh'",
        )
    if expression is not None:
        try:
            CronTrigger.from_crontab(expression, timezone=zone or ZoneInfo("UTC"))
        except ValueError as exc:
            fields_hint = ""
            if len(expression.split()) != 5:
                fields_hint = " (five fields: minute hour day-of-month month day-of-week)"
            reader.error(
                fields.at("cron"),
                fields.value_node("cron"),
                f"invalid cron expression {expression!r}: {exc}{fields_hint}",
            )
    return ScheduleSpec(kind="cron", cron=expression, timezone=timezone_name)


def _shape(reader: Reader, node: yaml.Node, path: str) -> ShapeSpec | None:
    read = reader.variant(node, path, _SHAPE_KEYS, "shape")
    if read is None:
        return None
    kind, fields = read
    if kind == "constant":
        return ConstantShapeSpec(
            users=fields.get("users", integer(1), 1, required=True),
            duration_s=fields.get("duration", nullable(duration())),
            spawn_rate=fields.get("spawn_rate", number(0.0, low_open=True)),
        )
    issues_before = len(reader.issues)
    start_users = fields.get("start_users", integer(0), RampingShapeSpec.start_users)
    stages = _stages(fields)
    clean = len(reader.issues) == issues_before
    if clean and start_users == 0 and all(stage.target == 0 for stage in stages):
        reader.error(fields.path, node, "the shape never has any users (every target is 0)")
    return RampingShapeSpec(stages=stages, start_users=start_users)


def _stages(fields: Fields) -> tuple[Stage, ...]:
    reader = fields.reader
    node = fields.require("stages")
    if node is None:
        return ()
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        reader.error(fields.at("stages"), node, "expected a non-empty list of stages")
        return ()
    stages: list[Stage] = []
    for index, stage_node in enumerate(node.value):
        stage = reader.mapping(
            stage_node,
            join(fields.at("stages"), index),
            ("duration", "target"),
            context="in a stage",
        )
        if stage is None:
            continue
        stages.append(
            Stage(
                duration_s=stage.get("duration", duration(), 0.0, required=True),
                target=stage.get("target", integer(0), 0, required=True),
            )
        )
    return tuple(stages)
