"""``loadsvc serve --workers 2``: a front over two worker processes, against a real target.

Most tests share one front, ready before the first of them; the tests that stop
or authorise start their own, so no test depends on another or on their order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.configs import config_text, rest_user, scenario
from tests.support.http import get_json, http, metric_value, set_faults
from tests.support.processes import Proc, start_target
from tests.support.timing import wait_for

WS_USERS = 15  # odd, so the two workers' shares differ (8 + 7)
REST_USERS = 11
TOKEN = "t0ken-workers-9c1e"
CONFIG = f"""\
version: 1
scenarios:
  market_stream:
    schedule: {{kind: continuous, verdict_every: 5m}}
    shape: {{kind: constant, users: {WS_USERS}, duration: 5m, spawn_rate: 100}}
    users:
      - {{kind: ws_stream, path: /ws/market}}
  foreign_flow:
    schedule: {{kind: continuous, verdict_every: 5m}}
    shape: {{kind: constant, users: {REST_USERS}, duration: 5m, spawn_rate: 100}}
    users:
      - kind: rest
        pacing: 1s
        tasks:
          - path: /api/market/foreign-detail
"""


@dataclass
class Front:
    """The running front, its target, and where it keeps the workers' metric files."""

    proc: Proc
    url: str
    target_url: str
    metrics_dir: Path

    def metrics(self) -> str:
        status, body = http("GET", self.url + "/metrics")
        assert status == 200
        return body.decode()

    def worker_pids(self) -> list[int | None]:
        return [w["pid"] for w in get_json(self.url + "/api/status")["service"]["workers"]]

    def target_connections(self) -> int:
        return int(get_json(self.target_url + "/admin/stats")["connections"]["/ws/market"])

    def totals(self) -> tuple[float, float, float, int]:
        """(market_stream users, foreign_flow users, WS connections) merged, target connections."""
        text = self.metrics()
        return (
            metric_value(text, "loadsvc_scenario_users", scenario="market_stream"),
            metric_value(text, "loadsvc_scenario_users", scenario="foreign_flow"),
            metric_value(text, "loadsvc_ws_connections", scenario="market_stream"),
            self.target_connections(),
        )


EXPECTED = (WS_USERS, REST_USERS, WS_USERS, WS_USERS)


def start_front(work: Path, target_url: str, token: str = "", config: str = CONFIG) -> Front:
    """``serve --workers 2`` on 127.0.0.1 port 0, returned once the front listens."""
    (work / "config.yaml").write_text(config)
    args = ["serve", "--host", "127.0.0.1", "--port", "0", "--workers", "2"]
    args += ["--config", str(work / "config.yaml"), "--target", target_url]
    args += ["--history-file", str(work / "runs.jsonl")]
    proc = Proc(
        ["--log-json", *args],
        env={"LOADSVC_API_TOKEN": token, "LOADSVC_API_TOKEN_FILE": ""},
    )

    def serving() -> dict[str, str] | None:
        for doc in proc.events("serving"):
            if doc.get("role") == "front":
                return doc
        assert proc.popen.poll() is None, proc.output()
        return None

    doc = wait_for(serving, 15, "the front listening")
    return Front(proc, doc["url"], target_url, Path(doc["metrics_dir"]))


def wait_ready(front: Front) -> None:
    """Poll the front's /readyz until every worker is ready."""
    wait_for(lambda: http("GET", front.url + "/readyz")[0] == 200, 20, "every worker ready")


def gone(pid: int) -> bool:
    """True when no process has this PID any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    """A reference target process for this module."""
    target, port = start_target()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        target.stop()


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, target_url: str) -> Iterator[Front]:
    """A ready ``serve --workers 2`` shared by the tests that do not stop it."""
    running = start_front(tmp_path_factory.mktemp("workers"), target_url)
    try:
        wait_ready(running)
        yield running
    finally:
        running.proc.stop()


def test_merged_metrics_add_up_to_the_configured_users(front: Front) -> None:
    """Merged users and connections equal the config and the target's own connection count."""
    wait_for(lambda: front.totals() == EXPECTED, 30, "merged totals equal the configuration")
    status = get_json(front.url + "/api/status")
    assert [w["shard"] for w in status["service"]["workers"]] == ["0/2", "1/2"]
    assert {s["name"]: s["users"] for s in status["scenarios"]} == {
        "market_stream": WS_USERS,
        "foreign_flow": REST_USERS,
    }
    assert http("GET", front.url + "/readyz")[0] == 200
    text = front.metrics()
    assert metric_value(text, "loadsvc_build_info", shard="0/1") == 1
    assert 'pid="' not in text  # every gauge has a merge mode, none falls back to per-PID


def test_promtool_accepts_the_merged_exposition(front: Front) -> None:
    """`promtool check metrics` passes on the merged /metrics of the front."""
    wait_for(lambda: front.totals() == EXPECTED, 30, "load running")
    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=front.metrics(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_killed_worker_is_replaced_and_its_gauges_dropped(front: Front) -> None:
    """SIGKILL worker 0 by PID: a new worker takes its share; totals are exact again, not doubled."""
    before = front.worker_pids()
    dead = before[0]
    assert dead is not None
    os.kill(dead, signal.SIGKILL)
    wait_for(
        lambda: (pids := front.worker_pids())[0] not in (None, dead) and pids[1] == before[1],
        20,
        "worker 0 restarted",
    )
    wait_for(lambda: front.totals() == EXPECTED, 30, "totals exact after the restart")


def test_the_front_serves_the_same_surface_as_serve(front: Front) -> None:
    """Through the front, no token means 403 with serve's error, and a bad ?limit= is 400."""
    status, body = http("POST", front.url + "/api/scenarios/market_stream/stop")
    assert status == 403 and "LOADSVC_API_TOKEN" in json.loads(body)["error"]
    assert http("GET", front.url + "/api/runs?limit=0")[0] == 400
    assert http("GET", front.url + "/api/runs?scenario=market_stream")[0] == 200


def test_control_is_checked_at_the_front_and_fanned_out(tmp_path: Path, target_url: str) -> None:
    """With a token: 401 without it; with it a stop reaches both workers (202, two answers)."""
    own = start_front(tmp_path, target_url, token=TOKEN)
    try:
        wait_ready(own)
        stop_url = own.url + "/api/scenarios/foreign_flow/stop"
        assert http("POST", stop_url)[0] == 401
        assert http("POST", stop_url, token="wrong")[0] == 401
        status, body = http("POST", stop_url, token=TOKEN)
        doc = json.loads(body)
        assert status == 202, doc
        assert [(w["index"], w["status"]) for w in doc["workers"]] == [(0, 202), (1, 202)]
        assert TOKEN not in own.proc.output()
    finally:
        own.proc.stop()


@pytest.mark.parametrize("when", ["while the workers start", "once ready"])
def test_sigterm_exits_zero_and_leaves_no_worker(
    tmp_path: Path, target_url: str, when: str
) -> None:
    """SIGTERM the front by PID (workers starting or ready): exit 0, no worker left, files removed."""
    own = start_front(tmp_path, target_url)
    try:
        if when == "once ready":
            wait_ready(own)

        def spawned() -> list[int]:
            pids = own.worker_pids()
            return [p for p in pids if p is not None] if None not in pids else []

        pids = wait_for(spawned, 10, "both workers spawned")
        assert len(pids) == 2
        assert own.proc.stop(timeout=30) == 0, own.proc.output()[-3000:]
    finally:
        own.proc.stop()
    wait_for(lambda: all(gone(p) for p in pids), 10, "no worker process left")
    assert not own.metrics_dir.exists()


POLL = "/api/market/foreign-detail"
REGRESSION_CONFIG = config_text(
    scenario(
        "poll",
        schedule="{kind: interval, every: 1h}",
        shape="{kind: constant, users: 4, duration: 2s, spawn_rate: 100}",
        users=rest_user(POLL, pacing="100ms"),
    )
    + "    baseline: {runs: 2, min_runs: 1}\n"
)


def test_each_worker_judges_its_share_and_accepting_reaches_both(
    tmp_path: Path, target_url: str
) -> None:
    """+30 ms: both workers' runs regress against their own history, the merged series is 1;
    accept-baseline through the front reaches both, the series is 0 at once, and the next
    slow run is judged against the accepted level (ok)."""
    own = start_front(tmp_path, target_url, token=TOKEN, config=REGRESSION_CONFIG)
    labels = {"scenario": "poll", "endpoint": POLL, "metric": "p95"}

    def run_once(expected: int) -> list[dict[str, object]]:
        status, body = http("POST", own.url + "/api/scenarios/poll/run", token=TOKEN)
        assert status == 202, body
        wait_for(
            lambda: get_json(own.url + "/api/runs?scenario=poll")["count"] == expected,
            30,
            f"{expected} worker runs recorded",
        )
        runs: list[dict[str, object]] = get_json(own.url + "/api/runs?scenario=poll")["runs"]
        return runs[:2]

    try:
        wait_ready(own)
        healthy = run_once(2)
        assert {r["shard"] for r in healthy} == {"0/2", "1/2"}
        set_faults(target_url, {"latency_ms": {POLL: 30}})
        slow = run_once(4)
        assert [r["regression"]["state"] for r in slow] == ["regressed", "regressed"]  # type: ignore[index]
        assert metric_value(own.metrics(), "loadsvc_regression_detected", **labels) == 1

        status, body = http("POST", own.url + "/api/scenarios/poll/accept-baseline", token=TOKEN)
        doc = json.loads(body)
        assert status == 200, doc
        assert [(w["status"], w["answer"]["accepted_runs"]) for w in doc["workers"]] == [
            (200, 1),
            (200, 1),
        ]
        assert metric_value(own.metrics(), "loadsvc_regression_detected", **labels) == 0
        again = run_once(6)
        assert [r["regression"]["state"] for r in again] == ["ok", "ok"]  # type: ignore[index]
    finally:
        set_faults(target_url, None)
        own.proc.stop()
