"""The user-kind tables: the config loader reads every kind through KINDS, the runner builds
its users through BUILDERS (the runtime side; the config layer never imports a user class)."""

from __future__ import annotations

import asyncio
import random

import pytest

from loadsvc.config import ConfigError, parse_config
from loadsvc.config.kinds import KINDS, EndpointRef
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.users import (
    BUILDERS,
    RestUser,
    Target,
    UserContext,
    WsReconnectUser,
    WsStreamUser,
    wire_group,
)
from loadsvc.users.python import ManagedUser

USER_OF_KIND = {
    "rest": RestUser,
    "ws_stream": WsStreamUser,
    "ws_reconnect": WsReconnectUser,
    "python": ManagedUser,
}
GROUPS = {
    "rest": "{kind: rest, pacing: 1s, tasks: [{path: '/a?x=1'}, {path: /b, method: post}]}",
    "ws_stream": "{kind: ws_stream, path: /ws/market}",
    "ws_reconnect": "{kind: ws_reconnect, path: /ws/alerts, name: alerts}",
    "python": "{kind: python, class: 'examples.custom_user:DashboardTab'}",
}


def scenario(*groups: str) -> ScenarioSpec:
    """A scenario ``s`` with the given user groups (flow-style YAML)."""
    users = "".join(f"      - {g}\n" for g in groups)
    text = f"version: 1\nscenarios:\n  s:\n    shape: {{kind: constant, users: 1}}\n    users:\n{users}"
    return parse_config(text, "test.yaml").scenario("s")


def issues(*groups: str) -> list[str]:
    """The messages of the issues a scenario with ``groups`` has."""
    with pytest.raises(ConfigError) as error:
        scenario(*groups)
    return [issue.message for issue in error.value.issues]


def test_the_loader_accepts_exactly_the_kinds_of_the_table() -> None:
    """An unknown kind is refused with the table's kinds, in the table's order."""
    assert tuple(KINDS) == tuple(USER_OF_KIND)
    (message,) = issues("{kind: websocket, path: /ws}")
    assert message == f"expected one of {', '.join(KINDS)}, got 'websocket'"


def test_every_kind_the_loader_reads_has_a_builder() -> None:
    """The runtime table builds exactly the kinds the config table reads, in the same order."""
    assert tuple(BUILDERS) == tuple(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_accepts_the_keys_its_module_declares(kind: str) -> None:
    """An unknown key in a group lists the keys of that kind's table entry, and only those."""
    group = GROUPS[kind].replace("{", "{bogus: 1, ", 1)
    (message,) = issues(group)
    assert message == f"unknown key 'bogus' for user kind {kind!r}; expected one of: " + ", ".join(
        KINDS[kind].keys
    )


def test_each_kind_reports_its_endpoints() -> None:
    """A group's endpoints come from its kind: one per REST task (query dropped), one per WS."""
    spec = scenario(*GROUPS.values())
    assert [u.kind for u in spec.users] == list(GROUPS)
    assert [u.endpoints() for u in spec.users] == [
        (EndpointRef("/a", "http", "GET"), EndpointRef("/b", "http", "POST")),
        (EndpointRef("/ws/market", "ws"),),
        (EndpointRef("alerts", "ws"),),
        (EndpointRef("/api/market/snapshot", "http", "GET"), EndpointRef("/ws/market", "ws")),
    ]
    assert len(spec.endpoints()) == 5  # the python group's /ws/market is the stream's too


async def test_wire_group_builds_the_user_class_of_each_kind(metrics: Metrics) -> None:
    """The runner's factory for a group makes users of the group's kind, a new one each call."""
    spec = scenario(*GROUPS.values())
    recorder = Recorder(metrics)
    stats = recorder.begin(spec)
    ctx = UserContext("s", Target("http://127.0.0.1:9"), asyncio.Event(), started_at=0.0)
    for group in spec.users:
        wiring = wire_group(group, recorder.sinks(stats))
        first, second = (wiring.make(ctx, random.Random(1)) for _ in range(2))
        assert type(first) is USER_OF_KIND[group.kind] and first is not second
        assert wiring.spec is group


def test_max_message_is_a_ws_option_of_every_ws_kind() -> None:
    """max_message (a size) is read for both WS kinds; 1 MiB by default; a bad one is reported."""
    stream, storm = scenario(
        "{kind: ws_stream, path: /ws, max_message: 64KiB}",
        "{kind: ws_reconnect, path: /ws2}",
    ).users
    assert getattr(stream, "max_message", None) == 64 * 1024
    assert getattr(storm, "max_message", None) == 1024 * 1024
    assert issues("{kind: ws_reconnect, path: /ws, max_message: 12}") == [
        "must be between 1KiB and 1GiB, got 12"
    ]
