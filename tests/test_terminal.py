"""What the terminal says: a last line that matches the exit code, the paths written, one-line
errors for a busy port, a help that lists the scenarios, compare of one scenario only."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import loadsvc, set_faults, target_process


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    """One reference target process for the module."""
    with target_process() as url:
        yield url


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that a listening socket holds for the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _run(target: str, tmp: Path, *extra: str) -> tuple[int, list[str], Path, Path]:
    out, html = tmp / "out.json", tmp / "r.html"
    r = loadsvc(
        "run", "foreign_flow", "--target", target, "--users", "5", "--duration", "2s",
        "--summary-json", str(out), "--report-html", str(html), *extra,
    )  # fmt: skip
    return r.returncode, r.stdout.rstrip().splitlines(), out, html


def test_a_failing_run_ends_with_failed_and_exit_1_and_prints_the_paths(
    target_url: str, tmp_path: Path
) -> None:
    """With 30 % errors the last line says FAILED, the exit code is 1, and both paths are printed."""
    set_faults(target_url, {"error_ratio": {"/api/market/foreign-detail": 0.3}})
    try:
        code, lines, out, html = _run(target_url, tmp_path)
    finally:
        set_faults(target_url, None)
    assert code == 1
    # A loaded machine may make the generator busy too; the 30 % errors fail the run either way.
    assert lines[-1] == "foreign_flow: FAILED" or lines[-1].startswith(
        "foreign_flow: FAILED; event-loop lag p99"
    )
    assert f"  summary JSON   {out}" in lines and f"  HTML report    {html}" in lines
    assert out.exists() and html.exists()
    assert json.loads(out.read_text())["final"] == "failed"
    assert not any(line.endswith("PASSED") for line in lines)
    assert any(
        line.startswith(
            ("generator healthy: event-loop lag p99 ", "generator BUSY: event-loop lag")
        )
        for line in lines
    )


@pytest.mark.parametrize("command", ["target", "serve"])
def test_a_busy_port_exits_2_with_one_line_naming_it(command: str, taken_port: int) -> None:
    """target and serve on a taken port: exit 2, one line on stderr naming the port, no traceback."""
    extra = ["--target", "http://127.0.0.1:9"] if command == "serve" else []
    r = loadsvc(command, "--port", str(taken_port), *extra, timeout=30)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {taken_port} on 127.0.0.1 is already in use" in lines[0]


def test_demo_refuses_a_busy_port_before_starting_anything(taken_port: int) -> None:
    """demo with its target port taken: exit 2 naming the port (nothing else was started)."""
    r = loadsvc("demo", "--repo", ".", "--target-port", str(taken_port), timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == (
        f"loadsvc demo: target: port {taken_port} on 127.0.0.1 is already in use "
        "(another process listens there)"
    )
    assert r.stdout == ""


def test_run_help_describes_every_argument_and_lists_the_scenarios() -> None:
    """run --help explains scenario and --config and lists the configuration's scenarios."""
    r = loadsvc("run", "--help", timeout=30)
    assert r.returncode == 0
    assert "the scenario to run" in r.stdout and "the configuration file" in r.stdout
    for name in ("market_stream", "foreign_flow", "market_open_burst", "reconnect_storm"):
        assert f"\n  {name} " in r.stdout
    demo = loadsvc("run", "--config", "examples/demo.yaml", "--help", timeout=30)
    assert "20 dashboard clients polling" in demo.stdout


def test_compare_refuses_two_different_scenarios(tmp_path: Path) -> None:
    """compare of a foreign_flow and a market_stream summary exits 2 naming both scenarios."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path, name in ((a, "foreign_flow"), (b, "market_stream")):
        doc = {"scenario": name, "started_at": 1.7647e9, "ended_at": 1.7647e9 + 30}
        doc.update(endpoints=[], thresholds=[])
        path.write_text(json.dumps(doc))
    r = loadsvc("compare", str(a), str(b), timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "'foreign_flow'" in r.stderr and "'market_stream'" in r.stderr
