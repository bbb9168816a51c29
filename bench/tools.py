"""The command line of every load generator and probe the bench compares."""

from __future__ import annotations

import sys
from pathlib import Path

from bench import procs
from bench.scenarios import rest_scenario, ws_scenario
from bench.trial import Child

GENERATOR = "generator"
PROBE = "probe"


def _config(workdir: Path, name: str, text: str) -> str:
    path = workdir / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def _loadsvc(config: str, scenario: str) -> Child:
    return Child(
        GENERATOR,
        procs.python("clients/loadsvc_gen.py", "{control}", GENERATOR, "{url}", config, scenario),
    )


def loadsvc_rest(workdir: Path, users: int, validate: bool) -> Child:
    """loadsvc with a closed-model REST scenario (``validate``: check the body's keys)."""
    name = f"rest-{users}-{'validating' if validate else 'status'}"
    return _loadsvc(_config(workdir, name, rest_scenario(users, validate)), "bench_rest")


def loadsvc_ws(workdir: Path, connections: int, spawn_rate: int) -> Child:
    """loadsvc holding ``connections`` market_stream clients."""
    name = f"ws-{connections}"
    return _loadsvc(_config(workdir, name, ws_scenario(connections, spawn_rate)), "bench_ws")


def _locust(locustfile: str, users: int, rate: float) -> Child:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(procs.ROOT / "bench" / "clients" / locustfile),
        "--headless",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--host",
        "{url}",
    ]
    return Child(GENERATOR, command, {"BENCH_USERS": str(users), "BENCH_RATE": str(rate)})


def locust_rest(users: int) -> Child:
    """Locust, one process, FastHttpUser without think time."""
    return _locust("locust_rest.py", users, users)


def locust_ws(connections: int, spawn_rate: int) -> Child:
    """Locust, one process, a websocket-client user per connection."""
    return _locust("locust_ws.py", connections, spawn_rate)


def aiohttp_loop(users: int) -> Child:
    """The bare aiohttp + uvloop REST loop."""
    return Child(
        GENERATOR,
        procs.python(
            "clients/aiohttp_loop.py",
            "{control}",
            GENERATOR,
            "{url}/api/market/snapshot",
            str(users),
        ),
    )


def wrk(connections: int, seconds: float) -> Child:
    """wrk, one thread: the ceiling of what the target serves. Stopped by PID."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{int(seconds) + 1}s",
        "{url}/api/market/snapshot",
    ]
    return Child(GENERATOR, command, stepped=False)


def ws_bare(connections: int, spawn_rate: int) -> Child:
    """The bare websockets + orjson client."""
    return Child(
        GENERATOR,
        procs.python(
            "clients/ws_bare.py",
            "{control}",
            GENERATOR,
            "{ws}/ws/market",
            str(connections),
            str(spawn_rate),
        ),
    )


def rest_probe() -> Child:
    """The independent REST probe (~10 requests a second)."""
    return Child(
        PROBE,
        procs.python("clients/rest_probe.py", "{control}", PROBE, "{url}/api/market/snapshot"),
    )


def ws_probe(connections: int) -> Child:
    """The independent WS probe."""
    return Child(
        PROBE,
        procs.python("clients/ws_probe.py", "{control}", PROBE, "{ws}/ws/market", str(connections)),
    )
