"""``loadsvc serve`` as a process with small configurations: start-up checks, reload, history."""

from __future__ import annotations

import json
import signal
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.support import (
    Proc,
    get_json,
    http,
    metric_value,
    start_serve,
    target_process,
    wait_for,
)
from tests.support.configs import config_text, rest_user, scenario

TOKEN = "tok-lifecycle-4b9f"

# A REST poller, scheduled or not: the scenario both SMALL and RESHAPED keep.
POLL_USERS = rest_user("/api/market/snapshot", pacing="200ms")
TWO_USERS_FOR_A_SECOND = "{kind: constant, users: 2, duration: 1s}"

SMALL = config_text(
    scenario(
        "stream",
        schedule="{kind: continuous, verdict_every: 1s}",
        shape="{kind: constant, users: 3}",
    ),
    scenario(
        "poll",
        schedule="{kind: interval, every: 1h}",
        shape=TWO_USERS_FOR_A_SECOND,
        users=POLL_USERS,
    ),
    service="log_interval: 1s\nstop_timeout: 5s\n",
)

RESHAPED = config_text(
    scenario(
        "poll",
        schedule="{kind: interval, every: 30m}",
        shape=TWO_USERS_FOR_A_SECOND,
        users=POLL_USERS,
    ),
    scenario("burst", schedule='{kind: cron, cron: "30 8 * * *", timezone: UTC}'),
)

INVALID = """\
version: 1
scenarios:
  stream:
    schedule: {kind: continuous}
    shape: {kind: constant, users: -3}
    users:
      - {kind: ws_stream, path: /ws/market}
"""


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    """One reference target process for this module."""
    with target_process() as url:
        yield url


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``; return it."""
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def serve_small(
    tmp_path: Path, target_url: str, history: Path | None = None
) -> tuple[Path, Proc, str]:
    """``serve`` on the SMALL config against ``target_url``: (its config file, process, URL)."""
    config = write(tmp_path / "c.yaml", SMALL)
    proc, url = start_serve(
        ["--config", str(config), "--target", target_url],
        env={"LOADSVC_HISTORY_FILE": str(history or tmp_path / "h.jsonl")},
    )
    return config, proc, url


def running(url: str) -> dict[str, bool]:
    """Scenario name -> running, from /api/status."""
    return {s["name"]: s["running"] for s in get_json(url + "/api/status")["scenarios"]}


def test_bad_config_exits_2_with_its_errors_before_starting(tmp_path: Path) -> None:
    """An invalid config file: exit 2, its errors with file:line on stderr, nothing served."""
    bad = write(tmp_path / "bad.yaml", INVALID)
    proc = Proc(["serve", "--config", str(bad), "--target", "http://127.0.0.1:9", "--port", "0"])
    assert proc.wait(20) == 2
    err = "".join(proc.err)
    assert f"{bad}:5: scenarios.stream.shape.users" in err
    assert "serving" not in err


def test_unreachable_target_serves_and_control_api_without_token_is_403(tmp_path: Path) -> None:
    """A dead target only warns; with no token the control API answers 403, reads stay open."""
    _, proc, url = serve_small(tmp_path, "http://127.0.0.1:9")
    try:
        assert proc.events("target unreachable at start; serving anyway")
        assert http("GET", url + "/healthz")[0] == 200
        assert http("GET", url + "/readyz")[0] == 200
        assert http("POST", url + "/api/scenarios/poll/run")[0] == 403
        assert http("POST", url + "/api/scenarios/poll/run", token="anything")[0] == 403
        assert http("POST", url + "/api/scenarios/stream/stop", token="anything")[0] == 403
        assert running(url)["stream"]
        # The dead target's failures: aggregated lines, by endpoint and reason.
        line = wait_for(lambda: proc.events("failures"), 10, "an aggregated failure line")[0]
        assert line["scenario"] == "stream" and line["counts"]["/ws/market refused"] > 0
    finally:
        assert proc.stop() == 0


def test_sighup_rejects_an_invalid_config_and_applies_a_valid_one(
    tmp_path: Path, target_url: str
) -> None:
    """SIGHUP: an invalid file is logged and ignored; a valid one reschedules and stops removed."""
    config, proc, url = serve_small(tmp_path, target_url)
    try:
        wait_for(lambda: running(url)["stream"], 10, "stream running")
        before = {s["name"]: s for s in get_json(url + "/api/status")["scenarios"]}

        write(config, INVALID)
        proc.signal(signal.SIGHUP)
        rejected = wait_for(
            lambda: proc.events("configuration reload rejected; the running configuration stays"),
            10,
            "the rejection logged",
        )[0]
        assert any(f"{config}:5: scenarios.stream.shape.users" in e for e in rejected["errors"])
        after = {s["name"]: s for s in get_json(url + "/api/status")["scenarios"]}
        assert list(after) == ["stream", "poll"] and after["stream"]["running"]
        assert after["stream"]["run_id"] == before["stream"]["run_id"]
        assert after["poll"]["next_run"] == before["poll"]["next_run"]
        text = http("GET", url + "/metrics")[1].decode()
        assert metric_value(text, "loadsvc_config_reloads_total", result="failure") == 1

        write(config, RESHAPED)
        proc.signal(signal.SIGHUP)
        wait_for(lambda: proc.events("configuration reloaded"), 10, "the reload logged")
        status = wait_for(
            lambda: (
                (s := get_json(url + "/api/status")["scenarios"])
                and [x["name"] for x in s] == ["poll", "burst"]
                and s
            ),
            10,
            "the new scenarios listed",
        )
        poll, burst = status
        assert poll["schedule"] == "every 1800s"
        # Rescheduled on the new interval: the next wall-clock multiple of 30 minutes (which,
        # in the second half of an hour, is the same instant the hourly schedule had).
        assert poll["next_run_timestamp"] % 1800 == 0
        assert 0 < poll["next_run_timestamp"] - time.time() <= 1800
        assert burst["next_run"].endswith("T08:30:00+00:00")
        wait_for(
            lambda: (
                metric_value(
                    http("GET", url + "/metrics")[1].decode(),
                    "loadsvc_scenario_running",
                    scenario="stream",
                )
                == 0
            ),
            10,
            "the removed continuous scenario stopped",
        )
        assert http("GET", url + "/api/runs?scenario=stream&limit=1")[0] == 200
    finally:
        assert proc.stop() == 0


def test_history_survives_a_restart_and_stays_bounded(tmp_path: Path, target_url: str) -> None:
    """Runs recorded before a restart are served by /api/runs after it; the file stays bounded."""
    max_bytes = 6000
    config = write(
        tmp_path / "c.yaml",
        SMALL.replace(
            "  log_interval: 1s", f"  log_interval: 1s\n  history_max_bytes: {max_bytes}"
        ),
    )
    history = tmp_path / "runs.jsonl"
    env = {"LOADSVC_HISTORY_FILE": str(history), "LOADSVC_API_TOKEN": TOKEN}
    args = ["--config", str(config), "--target", target_url]
    proc, url = start_serve(args, env)
    try:
        status, body = http("POST", url + "/api/scenarios/poll/run", token=TOKEN)
        assert status == 202
        run_id = json.loads(body)["run_id"]

        def poll_recorded() -> list[dict[str, object]]:
            return get_json(url + "/api/runs?scenario=poll")["runs"]  # type: ignore[no-any-return]

        first = wait_for(poll_recorded, 10, "the poll run recorded")[0]
        assert first["run_id"] == run_id and first["trigger"] == "api"

        # The continuous stream is judged every second: windows pile up past the bound and
        # the oldest are compacted away.
        def first_window_dropped() -> bool:
            windows = get_json(url + "/api/runs?scenario=stream&limit=1000")["runs"]
            return bool(windows) and all(w.get("window") != 1 for w in windows)

        wait_for(first_window_dropped, 30, "the oldest windows compacted away")
        assert history.stat().st_size <= max_bytes
    finally:
        assert proc.stop() == 0
    assert 0 < history.stat().st_size <= max_bytes

    proc, url = start_serve(args, env)
    try:
        runs = get_json(url + "/api/runs?limit=100")["runs"]
        assert [r["run_id"] for r in runs if r["scenario"] == "poll"] == [run_id]
        assert runs == sorted(runs, key=lambda r: r["ended_at"], reverse=True)
        assert len(get_json(url + "/api/runs?limit=2")["runs"]) == 2
        status = {s["name"]: s for s in get_json(url + "/api/status")["scenarios"]}
        assert status["poll"]["last_run"]["run_id"] == run_id
    finally:
        assert proc.stop() == 0


def test_sighup_reads_off_the_loop_and_refuses_an_oversized_file(
    tmp_path: Path, target_url: str
) -> None:
    """SIGHUP: a file over the size limit is refused unparsed (old config kept, failure counted);
    a large valid one is parsed off the event loop, so /healthz answers before it applies."""
    config, proc, url = serve_small(tmp_path, target_url)
    try:
        wait_for(lambda: running(url)["stream"], 10, "stream running")
        config.write_bytes(SMALL.encode() + b"#" * (1024 * 1024) + b"\n")
        proc.signal(signal.SIGHUP)
        rejected = wait_for(
            lambda: proc.events("configuration reload rejected; the running configuration stays"),
            10,
            "the oversized file rejected",
        )[0]
        assert "the configuration file is too large" in rejected["errors"][0]
        text = http("GET", url + "/metrics")[1].decode()
        assert metric_value(text, "loadsvc_config_reloads_total", result="failure") == 1
        assert metric_value(text, "loadsvc_config_last_reload_successful") == 0
        assert list(running(url)) == ["stream", "poll"]

        # Valid, under the limit, and slow to parse (a long list under an x- extension key).
        write(config, SMALL.replace("poll:", "poll2:") + "x-pad:\n" + "  - {a: 1, b: two}\n" * 5000)
        proc.signal(signal.SIGHUP)
        wait_for(lambda: proc.events("configuration reload started"), 10, "the reload begun")
        status, _ = http("GET", url + "/healthz")
        answered_at = time.time()
        assert status == 200
        done = wait_for(lambda: proc.events("configuration reloaded"), 60, "the reload applied")
        applied_at = datetime.fromisoformat(done[0]["timestamp"]).timestamp()
        assert answered_at < applied_at  # the loop answered while the file was being parsed
        # /api/status may be up to a second old (readcache.MAX_AGE_S): the read before the
        # reload can still be served when the parse took less.
        wait_for(lambda: list(running(url)) == ["stream", "poll2"], 5, "the new scenarios shown")
    finally:
        assert proc.stop() == 0


def test_an_unwritable_history_is_reported_at_start_and_on_readyz(tmp_path: Path) -> None:
    """A file where the history's folder should be: logged at start-up, /readyz 503 naming it,
    the service still measures; once the path is writable, ready again. (A directory at the
    history's own path is refused at start: see test_history.)"""
    blocker = tmp_path / "volume"
    blocker.write_text("not a folder yet")
    history = blocker / "runs.jsonl"
    _, proc, url = serve_small(tmp_path, "http://127.0.0.1:9", history)
    try:
        (line,) = proc.events(
            "the run history cannot be written; serving, but not ready until it can"
        )
        assert str(history) in line["problem"]
        assert http("GET", url + "/healthz")[0] == 200
        status, body = http("GET", url + "/readyz")
        assert status == 503 and str(history) in json.loads(body)["reason"]
        blocker.unlink()
        wait_for(lambda: http("GET", url + "/readyz")[0] == 200, 10, "ready once writable")
    finally:
        assert proc.stop() == 0
