"""``loadsvc serve --workers 2``: a front over two worker processes, against a real target.

The tests share one front and run in file order: merged totals, promtool on the
merged output, a killed worker replaced without stale gauges, then SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.service.support import Proc, eventually, get_json, http, metric_value, start_target

WS_USERS = 15  # odd, so the two workers' shares differ (8 + 7)
REST_USERS = 11
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


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    """``serve --workers 2`` on 127.0.0.1 port 0 against a reference target process."""
    work = tmp_path_factory.mktemp("workers")
    (work / "config.yaml").write_text(CONFIG)
    target, port = start_target()
    target_url = f"http://127.0.0.1:{port}"
    args = ["serve", "--host", "127.0.0.1", "--port", "0", "--workers", "2"]
    args += ["--config", str(work / "config.yaml"), "--target", target_url]
    args += ["--history-file", str(work / "runs.jsonl")]
    proc = Proc(
        ["--log-json", *args],
        env={"LOADSVC_API_TOKEN": "", "LOADSVC_API_TOKEN_FILE": ""},
    )

    def serving() -> dict[str, str] | None:
        for doc in proc.events("serving"):
            if doc.get("role") == "front":
                return doc
        assert proc.popen.poll() is None, proc.output()
        return None

    doc = eventually(serving, 15, "the front listening")
    running = Front(proc, doc["url"], target_url, Path(doc["metrics_dir"]))
    try:
        yield running
    finally:
        proc.stop()
        target.stop()


def test_merged_metrics_add_up_to_the_configured_users(front: Front) -> None:
    """Merged users and connections equal the config and the target's own connection count."""
    eventually(lambda: front.totals() == EXPECTED, 30, "merged totals equal the configuration")
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
    eventually(lambda: front.totals() == EXPECTED, 30, "load running")
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
    eventually(
        lambda: (pids := front.worker_pids())[0] not in (None, dead) and pids[1] == before[1],
        20,
        "worker 0 restarted",
    )
    eventually(lambda: front.totals() == EXPECTED, 30, "totals exact after the restart")


def test_sigterm_exits_zero_and_leaves_no_worker(front: Front) -> None:
    """SIGTERM the front by PID: exit 0, every worker PID gone, the metrics directory removed."""
    pids = [p for p in front.worker_pids() if p is not None]
    assert len(pids) == 2
    assert front.proc.stop(timeout=30) == 0, front.proc.output()[-3000:]

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    eventually(lambda: all(gone(p) for p in pids), 10, "no worker process left")
    assert not front.metrics_dir.exists()
