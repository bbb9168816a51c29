"""`loadsvc compare` and `loadsvc run --baseline` on summaries written by `loadsvc run`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import loadsvc, set_faults, target_process

ENDPOINT = "/api/market/foreign-detail"


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    """One reference target process for the module."""
    with target_process() as url:
        yield url


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


def test_a_baseline_of_another_setup_is_no_baseline_and_passes(
    target_url: str, healthy: Path, tmp_path: Path
) -> None:
    """run --users 3 against 5-user summaries: not comparable, 'no baseline yet', exit 0."""
    (healthy / "junk.json").write_text("not json")
    try:
        r = run(target_url, tmp_path / "s.json", "--baseline", str(healthy), users="3")
    finally:
        (healthy / "junk.json").unlink()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "baseline: no baseline yet (0 of 1 comparable runs)" in r.stdout
    assert "note: " in r.stdout and "junk.json" in r.stdout


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
