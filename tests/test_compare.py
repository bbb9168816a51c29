"""`loadsvc compare` and `loadsvc run --baseline` on summaries written by `loadsvc run`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadsvc.target.paths import ADMIN_STATS_PATH
from tests.support import get_json, loadsvc, set_faults, target_process

ENDPOINT = "/api/market/foreign-detail"


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    """One reference target process for the module."""
    with target_process() as url:
        yield url


def requests_served(target_url: str) -> float:
    """REST requests the reference target answered so far (its /admin/stats)."""
    stats = get_json(f"{target_url}{ADMIN_STATS_PATH}")
    return float(sum(stats["rest_requests"].values()))


def run(
    target_url: str, out: Path, *extra: str, users: str = "5"
) -> subprocess.CompletedProcess[str]:
    """`loadsvc run foreign_flow` for 3 s, its summary written to ``out``."""
    return loadsvc(
        "run", "foreign_flow", "--target", target_url, "--users", users,
        "--duration", "3s", "--summary-json", str(out), *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def healthy(target_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two healthy summaries of foreign_flow."""
    folder = tmp_path_factory.mktemp("baseline")
    for name in ("a.json", "b.json"):
        r = run(target_url, folder / name)
        assert r.returncode == 0, r.stdout + r.stderr
    return folder


@pytest.fixture(scope="module")
def slow(
    target_url: str, healthy: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """A run with +30 ms on the endpoint, judged with --baseline against the healthy folder."""
    out = tmp_path_factory.mktemp("slow") / "slow.json"
    set_faults(target_url, {"latency_ms": {ENDPOINT: 30}})
    try:
        return run(target_url, out, "--baseline", str(healthy)), out
    finally:
        set_faults(target_url, None)


def test_two_healthy_runs_compare_equal(healthy: Path) -> None:
    """compare of two healthy summaries prints the side by side and exits 0."""
    r = loadsvc("compare", str(healthy / "a.json"), str(healthy / "b.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith(ENDPOINT)]
    assert [ln.split()[1] for ln in rows] == ["p50", "p95", "p99", "error_ratio"]
    assert "REGRESSED" not in r.stdout
    assert "baseline: no regression against the baseline (median of 1 run," in r.stdout


def test_run_baseline_fails_a_30ms_slowdown_under_every_threshold(
    slow: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """+30 ms passes the 200 ms threshold, yet run --baseline exits 1 and says why in one line."""
    r, out = slow
    assert r.returncode == 1, r.stdout + r.stderr
    # The last line is the final result, as the exit code says: a regression is a failure.
    assert r.stdout.rstrip().splitlines()[-1] == (
        "foreign_flow: FAILED (regressed against the baseline, under every threshold)"
    )
    assert "foreign_flow: PASSED" not in r.stdout
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(f"! {ENDPOINT} p95 ")]
    assert lines and "(median of 2 runs, " in lines[0]
    assert lines[0].endswith("beyond +50 % and +10 ms")
    doc = json.loads(out.read_text())
    assert doc["passed"] is True and doc["regression"]["state"] == "regressed"
    assert any(f["metric"] == "p95" and f["regressed"] for f in doc["regression"]["findings"])


def test_compare_exits_1_on_a_regression(
    healthy: Path, slow: tuple[subprocess.CompletedProcess[str], Path]
) -> None:
    """compare A slow.json marks p95 REGRESSED and exits 1."""
    r = loadsvc("compare", str(healthy / "a.json"), str(slow[1]))
    assert r.returncode == 1, r.stdout + r.stderr
    p95 = next(ln for ln in r.stdout.splitlines() if ln.startswith(ENDPOINT) and " p95 " in ln)
    assert p95.rstrip().endswith("REGRESSED")


def test_compare_exits_2_for_unreadable_input(healthy: Path, tmp_path: Path) -> None:
    """A missing file, broken JSON or a document that is no summary exits 2 and names it."""
    broken = tmp_path / "broken.json"
    broken.write_text('{"scenario": "foreign_flow", "endp')
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    for bad in (tmp_path / "missing.json", broken, other):
        r = loadsvc("compare", str(healthy / "a.json"), str(bad))
        assert r.returncode == 2 and str(bad) in r.stderr, r.stderr


def test_a_folder_without_a_comparable_summary_exits_2_before_running(
    target_url: str, healthy: Path, tmp_path: Path
) -> None:
    """run --users 3 against 5-user summaries: nothing comparable, so exit 2 naming the folder
    and no load sent (it used to say 'no baseline yet' and pass)."""
    (healthy / "junk.json").write_text("not json")
    try:
        r = run(target_url, tmp_path / "s.json", "--baseline", str(healthy), users="3")
    finally:
        (healthy / "junk.json").unlink()
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{healthy}: no healthy summary of scenario 'foreign_flow'" in r.stderr
    assert "junk.json: not JSON" in r.stderr
    assert not (tmp_path / "s.json").exists()


def hand_edited(healthy: Path, tmp_path: Path, edit: Any) -> Path:
    """A copy of a healthy summary changed by ``edit(doc)``."""
    doc = json.loads((healthy / "a.json").read_text())
    edit(doc)
    out = tmp_path / "edited.json"
    out.write_text(json.dumps(doc))
    return out


def _negative(doc: dict[str, Any]) -> None:
    doc["endpoints"][0]["p95_ms"] = -5.0


def _text(doc: dict[str, Any]) -> None:
    doc["endpoints"][0]["p50_ms"] = "fast"


def _millis(doc: dict[str, Any]) -> None:
    doc["started_at"] *= 1000


def _other_scenario(doc: dict[str, Any]) -> None:
    doc["scenario"] = "market_stream"


def _other_setup(doc: dict[str, Any]) -> None:
    doc["fingerprint"] = "0123456789ab"


def _failed(doc: dict[str, Any]) -> None:
    doc.update(result="failed", passed=False)


BAD_BASELINES = [
    (_negative, "endpoints[0].p95_ms: must be a finite number >= 0, got -5.0"),
    (_text, "endpoints[0].p50_ms: must be a finite number >= 0, got 'fast'"),
    (_millis, "started_at: "),
    (_other_scenario, "scenario: 'market_stream', this run is 'foreign_flow'"),
    (_other_setup, "fingerprint: '0123456789ab', this run is "),
    (_failed, "result: 'failed': not a healthy run to compare with"),
]


@pytest.mark.parametrize(
    ("edit", "said"), BAD_BASELINES, ids=[e.__name__ for e, _ in BAD_BASELINES]
)
def test_run_baseline_file_that_cannot_judge_the_run_exits_2_before_any_load(
    target_url: str, healthy: Path, tmp_path: Path, edit: Any, said: str
) -> None:
    """A hand-edited, foreign or failed baseline file: exit 2 naming file and field; the
    target saw no request (its counter did not move) and no summary was written."""
    bad = hand_edited(healthy, tmp_path, edit)
    before = requests_served(target_url)
    r = loadsvc(
        "run", "foreign_flow", "--target", target_url, "--users", "5", "--duration", "3s",
        "--summary-json", str(tmp_path / "s.json"), "--baseline", str(bad),
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"--baseline {bad}: {said}" in r.stderr, r.stderr
    assert requests_served(target_url) == before
    assert not (tmp_path / "s.json").exists()


def test_run_baseline_truncated_or_not_a_file_exits_2_before_any_load(
    target_url: str, healthy: Path, tmp_path: Path
) -> None:
    """A truncated summary, a FIFO and a link to /dev/zero exit 2 at once, naming the file."""
    truncated = tmp_path / "cut.json"
    truncated.write_bytes((healthy / "a.json").read_bytes()[:200])
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")
    for bad, said in ((truncated, "not JSON"), (fifo, "not a regular file"),
                      (zero, "not a regular file")):  # fmt: skip
        r = run(target_url, tmp_path / "s.json", "--baseline", str(bad))
        assert r.returncode == 2 and f"--baseline {bad}: {said}" in r.stderr, r.stderr
        assert not (tmp_path / "s.json").exists()


def test_compare_of_different_scenarios_or_setups_exits_2_unless_forced(
    healthy: Path, tmp_path: Path
) -> None:
    """compare of another scenario's or setup's run exits 2 naming both; --force compares."""
    other = hand_edited(healthy, tmp_path, _other_setup)
    r = loadsvc("compare", str(healthy / "a.json"), str(other))
    assert r.returncode == 2 and "are runs of different setups (fingerprint" in r.stderr
    r = loadsvc("compare", str(healthy / "a.json"), str(other), "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "compared anyway (--force)" in r.stderr
    stream = hand_edited(healthy, tmp_path, _other_scenario)
    r = loadsvc("compare", str(healthy / "a.json"), str(stream))
    assert r.returncode == 2 and "are runs of different scenarios" in r.stderr


def test_compare_with_a_renamed_endpoint_is_incomplete_never_no_regression(
    healthy: Path, slow: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    """A baseline whose endpoint was renamed compares nothing: exit 3, the headline says what
    was not compared (it used to print "no regression", exit 0, over a real +1000 %)."""

    def rename(doc: dict[str, Any]) -> None:
        doc["endpoints"][0]["endpoint"] = "/api/market/foreign-detail-v2"

    renamed = hand_edited(healthy, tmp_path, rename)
    r = loadsvc("compare", str(renamed), str(slow[1]))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "baseline: NOTHING COMPARED" in r.stdout and "no regression" not in r.stdout
    assert f"{ENDPOINT} p95: endpoint not in the baseline" in r.stdout


def test_run_baseline_that_does_not_exist_exits_2_before_running(
    target_url: str, tmp_path: Path
) -> None:
    """--baseline naming nothing is a usage error: exit 2, nothing run."""
    r = run(target_url, tmp_path / "s.json", "--baseline", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "--baseline" in r.stderr
    assert not (tmp_path / "s.json").exists()


def test_compare_takes_the_tolerance_of_the_scenario_in_config(
    healthy: Path, slow: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    """With --config, B's scenario's baseline.tolerance decides: +30 ms is within +100 ms."""
    loose = tmp_path / "loose.yaml"
    loose.write_text(
        "version: 1\nscenarios:\n  foreign_flow:\n    shape: {kind: constant, users: 5}\n"
        "    users: [{kind: rest, pacing: 2s, tasks: [{path: /api/market/foreign-detail}]}]\n"
        "    baseline: {tolerance: {latency: {relative: 1000%, absolute: 100ms}}}\n"
    )
    r = loadsvc("compare", str(healthy / "a.json"), str(slow[1]), "--config", str(loose))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "REGRESSED" not in r.stdout and "baseline: no regression" in r.stdout
    loose.write_text(loose.read_text().replace("1000%", "lots"))
    r = loadsvc("compare", str(healthy / "a.json"), str(slow[1]), "--config", str(loose))
    assert r.returncode == 2 and "baseline.tolerance.latency.relative" in r.stderr, r.stderr


def test_compare_of_two_runs_without_endpoints_is_incomplete_never_exit_0(
    healthy: Path, tmp_path: Path
) -> None:
    """Two summaries with no endpoint compare nothing: exit 3 (it said NOTHING COMPARED and
    exited 0, the code CI reads for "no regression")."""

    def emptied(doc: dict[str, Any]) -> None:
        doc["endpoints"] = []

    bare = hand_edited(healthy, tmp_path, emptied)
    r = loadsvc("compare", str(bare), str(bare))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "baseline: NOTHING COMPARED" in r.stdout and "no regression" not in r.stdout
