"""The ``/api/status`` document of one ``loadsvc serve`` process: pure functions of its state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from loadsvc.headline import generator_line
from loadsvc.lag import GeneratorState
from loadsvc.live import LiveVerdict
from loadsvc.report import live_doc
from loadsvc.service.supervisor import ScenarioState


def iso(ts: float | None) -> str | None:
    """A Unix timestamp as ISO 8601 in UTC (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def scenario_status(
    name: str, state: ScenarioState, next_run: float | None, live: LiveVerdict | None = None
) -> dict[str, Any]:
    """One scenario's entry: its schedule, its run in progress (judged live over the last
    minute), its next and last runs."""
    return {
        "name": name,
        "description": state.spec.description,
        "schedule": state.spec.schedule.describe(),
        "schedule_kind": state.spec.schedule.kind,
        "timezone": state.spec.schedule.timezone,
        "running": state.running,
        "stopping": state.stopping,
        "held": state.held,
        "run_id": state.run_id,
        "run_started_at": iso(state.run_started_at),
        "users": state.users,
        "next_run": iso(next_run),
        "next_run_timestamp": next_run,
        "restarts": state.restarts,
        "triggers_skipped": state.skipped,
        "last_run": state.last,
        "live": None if live is None else live_doc(live),
    }


def service_status(
    *,
    config: str,
    target: str,
    shard: str,
    started_at: float,
    ready: bool,
    control_api: bool,
) -> dict[str, Any]:
    """The ``service`` part: what it loads, from which file, since when, whether it is ready."""
    return {
        "config": config,
        "target": target,
        "shard": shard,
        "started_at": iso(started_at),
        "ready": ready,
        "control_api": control_api,
    }


def generator_status(state: GeneratorState) -> dict[str, Any]:
    """The ``generator`` part: busy or not over the last span, by the one definition
    (:mod:`loadsvc.lag`), and the words the status page shows for it (:mod:`loadsvc.headline`)."""
    return {
        **state.doc(),
        "headline": generator_line(state.lag_p99_s, state.limit_s, state.span_s, state.reads),
    }
