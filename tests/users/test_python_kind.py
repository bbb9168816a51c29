"""kind: python — a user class written in Python, measured and judged like a built-in one."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from loadsvc.config import ConfigError, load_config, parse_config
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.target.testing import RunningTarget
from loadsvc.users import Target

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_user.yaml"


async def test_the_example_user_is_counted_timed_and_judged(
    target: RunningTarget, metrics: Metrics, registry: CollectorRegistry
) -> None:
    """The example's snapshot requests and stream frames reach the metrics and the verdict."""
    spec = load_config(EXAMPLE).scenario("dashboard_tab")
    options = RunOptions(users=4, duration_s=4.0, tick_s=0.1, seed=1)
    result = await ScenarioRun(spec, Target(target.url), Recorder(metrics), options).execute()
    by_kind = {s.kind: s for s in result.endpoints}
    rest, stream = by_kind["http"], by_kind["ws"]
    assert rest.endpoint == "/api/market/snapshot" and rest.count >= 4 and rest.errors == 0
    assert rest.p95_s is not None and 0 < rest.p95_s < 0.2
    assert stream.endpoint == "/ws/market" and stream.connects >= 4 and stream.count >= 4
    assert stream.errors == 0 and stream.p99_s is not None and stream.p99_s < 0.1
    assert stream.sequenced  # declared by ws(..., sequenced=True): missed frames are known
    judged = {(j.endpoint, j.name): j for j in result.verdict.judgements}
    assert judged[("/api/market/snapshot", "http_latency")].samples == rest.count
    assert judged[("/ws/market", "ws_delivery_latency")].samples == stream.count
    assert result.passed, result.verdict.breached()
    get = registry.get_sample_value
    http = {"scenario": "dashboard_tab", "endpoint": "/api/market/snapshot", "method": "GET"}
    assert get("loadsvc_http_requests_total", {**http, "outcome": "ok"}) == rest.count
    ws = {"scenario": "dashboard_tab", "endpoint": "/ws/market"}
    assert get("loadsvc_ws_messages_total", {**ws, "outcome": "ok"}) == stream.count
    assert get("loadsvc_ws_connections", ws) == 0  # every stream was closed


async def test_a_breach_at_a_python_users_endpoint_fails_the_run(
    target: RunningTarget, metrics: Metrics
) -> None:
    """A slow snapshot fails the custom user's run on http_latency: it is judged, not excused."""
    await target.set_faults({"latency_ms": {"/api/market/snapshot": 300}})
    spec = load_config(EXAMPLE).scenario("dashboard_tab")
    options = RunOptions(users=2, duration_s=3.0, tick_s=0.1, seed=1)
    result = await ScenarioRun(spec, Target(target.url), Recorder(metrics), options).execute()
    failed = {(j.endpoint, j.name) for j in result.verdict.breached()}
    assert ("/api/market/snapshot", "http_latency") in failed


def _issues(group: str, tmp_path: Path) -> list[tuple[str, str]]:
    config = tmp_path / "c.yaml"
    config.write_text(
        "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 1}\n"
        f"    users:\n      - {group}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(config)
    return [(i.path, i.message) for i in error.value.issues]


def test_a_class_that_cannot_be_imported_is_a_config_error_naming_the_field(
    tmp_path: Path,
) -> None:
    """A missing module or class, or a bad spelling, is reported at users[0].class."""
    ((path, message),) = _issues("{kind: python, class: 'no_such_module_x:User'}", tmp_path)
    assert path == "scenarios.s.users[0].class"
    assert "cannot import 'no_such_module_x'" in message
    (mod := tmp_path / "mine.py").write_text("class Other:\n    pass\n")
    ((_, message),) = _issues("{kind: python, class: 'mine:User'}", tmp_path)
    assert message == "'mine' has no class 'User'"
    ((_, message),) = _issues("{kind: python, class: mine}", tmp_path)
    assert message == "expected 'module:Class', got 'mine'"
    assert mod.exists()


def test_a_class_that_is_not_a_user_is_a_config_error(tmp_path: Path) -> None:
    """No async run, or no declared endpoints: refused before anything starts."""
    (tmp_path / "notuser.py").write_text(
        "from loadsvc.users.python import PythonUser\n"
        "class Sync:\n    endpoints = ()\n    def run(self):\n        pass\n"
        "class Blind(PythonUser):\n    async def run(self):\n        pass\n"
    )
    ((path, message),) = _issues("{kind: python, class: 'notuser:Sync'}", tmp_path)
    assert path == "scenarios.s.users[0].class" and "needs 'async def run(self)'" in message
    ((_, message),) = _issues("{kind: python, class: 'notuser:Blind'}", tmp_path)
    assert "its 'endpoints' must be a non-empty tuple" in message


def test_thresholds_may_name_a_python_users_endpoints() -> None:
    """The declared endpoints are the scenario's: an endpoint override is checked against them."""
    text = (
        "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 1}\n"
        "    users: [{kind: python, class: 'examples.custom_user:DashboardTab'}]\n"
        "    thresholds:\n      endpoints:\n        /ws/market: {ws_missed_ratio: 0.01}\n"
    )
    spec = parse_config(text, "inline.yaml").scenario("s")
    (ws,) = [je for je in spec.judged_endpoints if je.kind == "ws"]
    assert ws.limits["ws_missed_ratio"] == 0.01  # sequenced, so the missed share is judged
