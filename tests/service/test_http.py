"""The HTTP surface of a real SoakService on 127.0.0.1 port 0: reads, auth, control, errors."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from loadsvc.config import parse_config
from loadsvc.logs import configure_logging
from loadsvc.service.app import SoakService
from loadsvc.service.settings import ServeSettings
from loadsvc.target.testing import RunningTarget
from loadsvc.users import Target
from tests.support.timing import wait_for_async

TOKEN = "t0ken-http-5f2a"
CONFIG = """\
version: 1
scenarios:
  poll:
    schedule: {kind: interval, every: 1h}
    shape: {kind: constant, users: 1, duration: 300ms}
    users:
      - kind: rest
        pacing: 100ms
        tasks: [{path: /api/market/snapshot}]
  hold:
    shape: {kind: constant, users: 1}
    users:
      - {kind: ws_stream, path: /ws/market}
"""

Factory = Callable[[str | None], Any]


@pytest.fixture
async def make_service(
    target: RunningTarget, tmp_path: Path
) -> AsyncIterator[Callable[[str | None], Any]]:
    """Start a SoakService with the given API token (None: no token); stopped afterwards."""
    started: list[SoakService] = []

    async def make(token: str | None) -> SoakService:
        settings = ServeSettings(
            config_path=None,
            target=Target(target.url),
            port=0,
            history_file=str(tmp_path / f"h{len(started)}.jsonl"),
            api_token=token,
        )
        service = SoakService(settings, parse_config(CONFIG, "test.yaml"))
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


async def post(client: aiohttp.ClientSession, url: str, token: str | None) -> tuple[int, Any]:
    """POST with an optional bearer token; (status, JSON body)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with client.post(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_reads_are_open_and_describe_the_service(
    make_service: Factory, client: aiohttp.ClientSession
) -> None:
    """/healthz, /readyz, /metrics and /api/status answer without a token."""
    service = await make_service(None)
    async with client.get(service.url + "/healthz") as resp:
        assert resp.status == 200
    async with client.get(service.url + "/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ready"
    async with client.get(service.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        names = {f.name for f in text_string_to_metric_families(await resp.text())}
    assert {"loadsvc_scenario_running", "loadsvc_config_reloads", "process_cpu_seconds"} <= names
    async with client.get(service.url + "/api/status") as resp:
        doc = await resp.json()
    assert [s["name"] for s in doc["scenarios"]] == ["poll", "hold"]
    poll, hold = doc["scenarios"]
    assert poll["schedule"] == "every 3600s" and poll["next_run"] is not None
    assert hold["schedule"] == "manual" and hold["next_run"] is None
    assert doc["service"]["ready"] and not doc["service"]["control_api"]
    # The generator's state: the trust limit is 10 % of the tightest threshold (ws 100 ms).
    assert doc["generator"]["loop_lag_limit_ms"] == pytest.approx(10.0)
    assert set(doc["generator"]) == {
        "busy", "loop_lag_p99_ms", "loop_lag_limit_ms", "span_s", "headline",
        "read_delay_p99_ms", "frames_sharing_a_read", "reads_busy",
    }  # fmt: skip
    # The page shows these words for it: healthy or busy by the same judgement, in one wording.
    word = "generator BUSY: " if doc["generator"]["busy"] else "generator healthy: "
    assert doc["generator"]["headline"].startswith((word, "generator: not watched"))


async def test_control_without_a_configured_token_is_403(
    make_service: Factory, client: aiohttp.ClientSession
) -> None:
    """With no token configured, run and stop answer 403 whatever the request carries."""
    service = await make_service(None)
    for token in (None, "", "guess"):
        status, body = await post(client, service.url + "/api/scenarios/poll/run", token)
        assert status == 403 and "LOADSVC_API_TOKEN" in body["error"]
    assert (await post(client, service.url + "/api/scenarios/poll/stop", TOKEN))[0] == 403
    assert not service.supervisor.state("poll").running


async def test_control_with_a_token_checks_it_and_answers_404_409(
    make_service: Factory, client: aiohttp.ClientSession
) -> None:
    """401 for a missing/wrong token, 202 to run, 409 when running or not, 404 for unknown."""
    service = await make_service(TOKEN)
    run, stop = service.url + "/api/scenarios/hold/run", service.url + "/api/scenarios/hold/stop"
    async with client.post(run) as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await post(client, run, "wrong"))[0] == 401
    assert (await post(client, run, TOKEN[:-1]))[0] == 401
    assert (await post(client, service.url + "/api/scenarios/nope/run", TOKEN))[0] == 404
    assert (await post(client, stop, TOKEN))[0] == 409
    status, body = await post(client, run, TOKEN)
    assert status == 202 and body["run_id"]
    assert (await post(client, run, TOKEN))[0] == 409
    assert (await post(client, stop, TOKEN)) == (
        202,
        {"scenario": "hold", "action": "stop", "run_id": body["run_id"]},
    )
    await wait_for_async(lambda: not service.supervisor.state("hold").running, 10, "the run ended")
    assert (await post(client, stop, TOKEN))[0] == 409


async def test_accept_baseline_is_a_control_action(
    make_service: Factory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """401 without the token, 404 for an unknown scenario, 200 and what was accepted; 503
    naming the file when the acceptance cannot be kept."""
    service = await make_service(TOKEN)
    url = service.url + "/api/scenarios/poll/accept-baseline"
    assert (await post(client, url, None))[0] == 401
    assert (await post(client, service.url + "/api/scenarios/nope/accept-baseline", TOKEN))[
        0
    ] == 404
    status, body = await post(client, url, TOKEN)
    assert status == 200
    assert body["action"] == "accept-baseline" and body["accepted_runs"] == 0
    assert "starts again" in body["baseline"]
    kept = tmp_path / "h0.jsonl.baselines.json"
    assert set(orjson.loads(kept.read_bytes())) == {"poll"}
    kept.unlink()
    kept.mkdir()
    status, body = await post(client, url, TOKEN)
    assert status == 503 and "h0.jsonl.baselines.json" in body["error"]


async def test_runs_are_listed_most_recent_first_with_filters(
    make_service: Factory, client: aiohttp.ClientSession
) -> None:
    """/api/runs lists finished runs newest first, filtered by ?scenario= and ?limit=."""
    service = await make_service(TOKEN)
    ids = []
    for _ in range(2):
        ids.append(
            (await post(client, service.url + "/api/scenarios/poll/run", TOKEN))[1]["run_id"]
        )
        await wait_for_async(
            lambda: not service.supervisor.state("poll").running, 10, "the run ended"
        )
    async with client.get(service.url + "/api/runs") as resp:
        runs = (await resp.json())["runs"]
    assert [r["run_id"] for r in runs] == ids[::-1]
    assert runs[0]["endpoints"][0]["endpoint"] == "/api/market/snapshot"
    async with client.get(service.url + "/api/runs?scenario=poll&limit=1") as resp:
        assert [r["run_id"] for r in (await resp.json())["runs"]] == ids[-1:]
    async with client.get(service.url + "/api/runs?scenario=hold") as resp:
        assert (await resp.json()) == {"runs": [], "count": 0}
    for bad in ("0", "x", "100000"):
        async with client.get(service.url + f"/api/runs?limit={bad}") as resp:
            assert resp.status == 400
    async with client.get(service.url + "/api/status") as resp:
        last = (await resp.json())["scenarios"][0]["last_run"]
    assert last["run_id"] == ids[-1] and {t["name"] for t in last["thresholds"]} == {
        "http_latency",
        "error_ratio",
    }


async def test_not_ready_before_start_and_while_stopping(
    target: RunningTarget, tmp_path: Path
) -> None:
    """/readyz is false until the scheduler runs and again once shutdown begins."""
    settings = ServeSettings(
        config_path=None, target=Target(target.url), port=0, history_file=str(tmp_path / "h")
    )
    service = SoakService(settings, parse_config(CONFIG, "test.yaml"))
    assert await service.readiness() == (False, "scheduler not running")
    await service.start()
    assert await service.readiness() == (True, "")
    await service.stop()
    assert await service.readiness() == (False, "shutting down")


async def test_a_non_utf8_authorization_is_401_and_logs_no_traceback(
    make_service: Factory,
) -> None:
    """Authorization bytes that are not UTF-8 get 401, never a 500 with a multi-line traceback
    in the JSON log; a good token still works on the same server."""
    log = io.StringIO()
    configure_logging(json=True, stream=log)
    try:
        service = await make_service(TOKEN)
        host, port = service.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /api/scenarios/hold/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            b"Authorization: Bearer \xff\xfe\xc3(\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        head = (await reader.read()).split(b"\r\n", 1)[0]
        writer.close()
    finally:
        structlog.reset_defaults()
    assert head == b"HTTP/1.1 401 Unauthorized", head
    events = [orjson.loads(line) for line in log.getvalue().splitlines()]
    assert not [e for e in events if "exception" in e or e.get("level") == "error"], events
    async with aiohttp.ClientSession() as client:
        assert (await post(client, service.url + "/api/scenarios/hold/stop", TOKEN))[0] == 409
