"""``loadsvc serve`` with the full default configuration against a real target process.

The tests share one service process (started once, with the time it took to
reach full load) and pass in any order: the outage test brings its target back,
and a service that a SIGTERM test ended is started again for the next test.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import (
    Proc,
    get_json,
    http,
    metric_value,
    scaled,
    start_serve,
    start_target,
    wait_for,
)

TOKEN = "tok-7d1e3c9a-soak-distinctive"
MARKET = "/ws/market"


def target_connections(target_url: str) -> int:
    """WS connections open on the target's market stream (0 while it is down)."""
    try:
        stats = get_json(target_url + "/admin/stats")
    except OSError:
        return 0
    return int(stats["connections"][MARKET])


def at_full_load(url: str, target_url: str) -> bool:
    """About 500 WS connections on the target and in loadsvc's count (users start spread over
    each second, so some handshakes are always in flight while spawning), and all 500
    foreign_flow users running."""
    text = http("GET", url + "/metrics")[1].decode()
    users = metric_value(text, "loadsvc_scenario_users", scenario="foreign_flow")
    connected = metric_value(text, "loadsvc_ws_connections", scenario="market_stream")
    return target_connections(target_url) >= 495 and users == 500 and connected >= 495


@dataclass
class Soak:
    """The running service and its target."""

    serve: Proc
    url: str
    target: Proc
    target_port: int
    history: Path
    full_load_s: float = 0.0  # from the start of serve until every user ran

    @property
    def target_url(self) -> str:
        return f"http://127.0.0.1:{self.target_port}"

    def metrics(self) -> str:
        status, body = http("GET", self.url + "/metrics")
        assert status == 200
        return body.decode()

    def target_connections(self) -> int:
        return target_connections(self.target_url)

    def restart_serve(self) -> None:
        """Start ``serve`` again (after a test ended it), at full load."""
        self.serve, self.url, self.full_load_s = serve_at_full_load(self.target_url, self.history)


def serve_at_full_load(target_url: str, history: Path) -> tuple[Proc, str, float]:
    """``serve`` with the default configuration at full load; (process, URL, seconds it took)."""
    started = time.monotonic()
    serve, url = start_serve(
        ["--target", target_url],
        env={"LOADSVC_API_TOKEN": TOKEN, "LOADSVC_HISTORY_FILE": str(history)},
    )
    wait_for(
        lambda: at_full_load(url, target_url), 25, "500 WS connections and 500 foreign_flow users"
    )
    return serve, url, time.monotonic() - started


STORM_EVERY_S = 15 * 60  # the default reconnect_storm: every 15m on the wall clock, for 2m
STORM_RUNS_S = 2 * 60


def storm_running(soak: Soak) -> bool:
    """Whether a reconnect_storm run is in progress."""
    doc = get_json(soak.url + "/api/status")
    return any(s["running"] for s in doc["scenarios"] if s["name"] == "reconnect_storm")


def no_scheduled_storm(soak: Soak) -> None:
    """Stop a storm its schedule started: a test within 2 minutes after :00/:15/:30/:45 finds
    one running (and one about to start is waited for first, then stopped)."""
    if STORM_EVERY_S - time.time() % STORM_EVERY_S < 15:
        wait_for(lambda: storm_running(soak), scaled(30), "the scheduled storm starting")
    if not storm_running(soak):
        return
    since_boundary = time.time() % STORM_EVERY_S
    assert since_boundary < STORM_RUNS_S + scaled(60), "a storm running outside its schedule"
    assert http("POST", soak.url + "/api/scenarios/reconnect_storm/stop", token=TOKEN)[0] == 202
    wait_for(lambda: not storm_running(soak), scaled(30), "the scheduled storm stopped")


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Soak]:
    """The default configuration served against a reference target process, at full load."""
    target, port = start_target()
    history = tmp_path_factory.mktemp("soak") / "history.jsonl"
    try:
        serve, url, full_load_s = serve_at_full_load(f"http://127.0.0.1:{port}", history)
    except BaseException:
        target.stop()
        raise
    soak = Soak(serve, url, target, port, history, full_load_s)
    try:
        yield soak
    finally:
        soak.serve.stop()
        soak.target.stop()


@pytest.fixture(autouse=True)
def serving(soak: Soak) -> Soak:
    """The soak as every test expects it: a target up and a service at full load."""
    if soak.target.popen.poll() is not None:  # an outage test that failed half-way
        soak.target, _ = start_target(soak.target_port)
    if soak.serve.popen.poll() is not None:  # a SIGTERM test ran before this one
        soak.restart_serve()
    wait_for(lambda: at_full_load(soak.url, soak.target_url), 25, "the soak at full load")
    return soak


def test_default_load_holds_500_connections_and_250_requests_per_second(soak: Soak) -> None:
    """Within 25 s of start market_stream holds ~500 WS connections and foreign_flow ~250 req/s."""
    # Full load, then one pacing period and the measurement window: all within 25 s of start.
    assert soak.full_load_s + 6.0 <= scaled(25), f"full load after {soak.full_load_s:.1f} s"
    gauge = metric_value(soak.metrics(), "loadsvc_ws_connections", scenario="market_stream")
    assert 495 <= gauge <= 500

    def requests() -> tuple[float, float]:
        return time.monotonic(), metric_value(
            soak.metrics(), "loadsvc_http_requests_total", scenario="foreign_flow", outcome="ok"
        )

    time.sleep(2.0)  # one pacing period: every user is on its schedule (a span, not a condition)
    t0, n0 = requests()
    time.sleep(4.0)  # the measurement window
    t1, n1 = requests()
    rate = (n1 - n0) / (t1 - t0)
    print(f"foreign_flow {rate:.1f} req/s; full load {soak.full_load_s:.1f} s after start")
    assert 225 <= rate <= 275


def test_metrics_pass_promtool(soak: Soak) -> None:
    """/metrics of the running service passes `promtool check metrics`."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=soak.metrics(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_status_lists_the_four_scenarios_with_next_runs(soak: Soak) -> None:
    """/api/status lists the four scenarios; scheduled ones have next run times, continuous run."""
    no_scheduled_storm(soak)
    doc = get_json(soak.url + "/api/status")
    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert list(by_name) == [
        "market_stream",
        "foreign_flow",
        "market_open_burst",
        "reconnect_storm",
    ]
    for name in ("market_stream", "foreign_flow"):
        assert by_name[name]["running"] and by_name[name]["users"] == 500
    burst = by_name["market_open_burst"]
    assert burst["schedule"] == "cron '0 9 * * mon-fri' Asia/Ho_Chi_Minh"
    assert burst["next_run"].endswith("T02:00:00+00:00")  # 09:00 in Ho Chi Minh City
    storm = by_name["reconnect_storm"]
    # every 15m on the wall clock: the next :00/:15/:30/:45, whenever the service started
    assert time.time() < storm["next_run_timestamp"] <= time.time() + 15 * 60
    assert storm["next_run_timestamp"] % (15 * 60) == 0
    assert not storm["running"]
    text = soak.metrics()
    assert metric_value(
        text, "loadsvc_scenario_next_run_timestamp_seconds", scenario="reconnect_storm"
    )


def test_triggered_reconnect_storm_runs_and_reports_reconnects(soak: Soak) -> None:
    """A reconnect_storm triggered with the token runs; reconnect durations show in /metrics."""
    no_scheduled_storm(soak)
    run = soak.url + "/api/scenarios/reconnect_storm/run"
    assert http("POST", run, token="wrong-token")[0] == 401
    assert http("POST", run)[0] == 401
    status, body = http("POST", run, token=TOKEN)
    assert status == 202, body
    run_id = json.loads(body)["run_id"]
    assert http("POST", run, token=TOKEN)[0] == 409
    wait_for(
        lambda: (
            metric_value(
                soak.metrics(),
                "loadsvc_ws_reconnect_duration_seconds_count",
                scenario="reconnect_storm",
            )
            > 0
        ),
        25,
        "reconnects measured",
        every=0.5,
    )
    stop = soak.url + "/api/scenarios/reconnect_storm/stop"
    assert http("POST", stop, token=TOKEN)[0] == 202

    def recorded() -> bool:
        runs = get_json(soak.url + "/api/runs?scenario=reconnect_storm&limit=5")["runs"]
        return bool(runs) and runs[0]["run_id"] == run_id

    wait_for(recorded, 15, "the stopped storm in /api/runs")
    assert http("POST", stop, token=TOKEN)[0] == 409


def test_service_survives_target_outage_and_recovers(soak: Soak) -> None:
    """Target killed for 5 s: /healthz answers throughout; ~500 connections again within 20 s."""
    wait_for(lambda: soak.target_connections() >= 495, 20, "full load before the outage")

    def refused() -> float:
        return metric_value(
            soak.metrics(), "loadsvc_http_requests_total", outcome="connection_error"
        )

    lines_before = len(soak.serve.err)
    soak.target.popen.kill()  # by PID: SIGKILL, an abrupt crash
    soak.target.wait(10)
    refused_before = refused()
    down_until = time.monotonic() + 5.0
    while time.monotonic() < down_until:  # the outage itself: /healthz polled all along
        status, _ = http("GET", soak.url + "/healthz", timeout=2)
        assert status == 200
        time.sleep(0.2)
    # REST users kept their pace (~250/s, each failing fast); WS users count their losses.
    assert refused() - refused_before > 600
    text = soak.metrics()
    assert metric_value(text, "loadsvc_ws_connection_errors_total", scenario="market_stream") > 0
    soak.target, _ = start_target(soak.target_port)
    back = time.monotonic()
    wait_for(lambda: soak.target_connections() >= 495, 20, "about 500 connections again")
    recovery = time.monotonic() - back
    print(f"market_stream back to 500 connections {recovery:.1f} s after the target returned")
    assert http("GET", soak.url + "/healthz")[0] == 200
    # Thousands of failures, logged in aggregate rather than one line each.
    assert len(soak.serve.err) - lines_before < 40


def test_sigterm_exits_0_promptly_and_never_logs_the_token(soak: Soak) -> None:
    """SIGTERM: exit 0 within 15 s, every run that started ended with its verdict recorded;
    the token, used on the control API, never appears in the output."""
    # The token crosses the control API at least once in this test, whatever ran before.
    assert http("POST", soak.url + "/api/scenarios/nope/run", token=TOKEN)[0] == 404
    began = time.monotonic()
    soak.serve.signal(signal.SIGTERM)
    assert soak.serve.wait(15) == 0
    took = time.monotonic() - began
    print(f"serve exited {took:.2f} s after SIGTERM")
    started = Counter(d["scenario"] for d in soak.serve.events("run started"))
    ended = Counter(d["scenario"] for d in soak.serve.events("run ended"))
    assert {"market_stream", "foreign_flow"} <= set(started)
    assert ended == started
    assert TOKEN not in soak.serve.output()
    records = [json.loads(line) for line in soak.history.read_text().splitlines()]
    assert set(started) <= {r["scenario"] for r in records}
