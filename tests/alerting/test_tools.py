"""The committed Prometheus and Alertmanager files pass the real promtool and amtool."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loadsvc.config.spec import Config
from loadsvc.render import FAST, render_all
from tests.support.stack import run_tool

RULES = ["prometheus/rules/loadsvc-recording.yml", "prometheus/rules/loadsvc-alerts.yml"]


def test_rules_pass_promtool_check() -> None:
    """promtool check rules accepts both rule files, lint included (no duplicate rules)."""
    out = run_tool(["promtool", "check", "rules", *RULES])
    assert out.count("SUCCESS") == 2


def test_promtool_unit_tests_pass(repo: Path) -> None:
    """promtool test rules runs every file in prometheus/tests against the production rules."""
    tests = sorted(str(p.relative_to(repo)) for p in (repo / "prometheus/tests").glob("*.yml"))
    assert tests, "no promtool test files"

    # One promtool per file, all at once: a promtool evaluates its files one after the
    # other on one core, so a single run of every file (~40 s) leaves the others idle.
    # At the lowest CPU priority: promtool's clock is simulated, so its result cannot depend on
    # how busy the machine is, and the tests running beside it in `make test`'s parallel phase
    # keep the CPU they need; the timeout allows for it.
    def promtool(test: str) -> str:
        return run_tool(["promtool", "test", "rules", test], timeout=600, niceness=19)

    with ThreadPoolExecutor(max_workers=len(tests)) as pool:
        outs = list(pool.map(promtool, tests))
    for test, out in zip(tests, outs, strict=True):
        assert out.count("SUCCESS") == 1, (test, out)


def test_prometheus_config_passes_promtool() -> None:
    """promtool check config accepts prometheus.yml and finds the two rule files it globs."""
    out = run_tool(["promtool", "check", "config", "prometheus/prometheus.yml"])
    assert "2 rule files found" in out


def test_fast_profile_rules_pass_promtool(tmp_path: Path, config: Config) -> None:
    """Rules rendered with the fast (end-to-end test) profile are valid too."""
    paths = [p for p in render_all(config, tmp_path, FAST) if p.suffix == ".yml"]
    rules = [str(p) for p in paths if "rules" in p.parts]
    out = run_tool(["promtool", "check", "rules", *rules])
    assert out.count("SUCCESS") == 2


def test_alertmanager_config_passes_amtool() -> None:
    """amtool check-config accepts alertmanager.yml with its route and both inhibit rules."""
    out = run_tool(["amtool", "check-config", "alertmanager/alertmanager.yml"])
    assert "2 inhibit rules" in out


def test_commented_receiver_examples_are_valid(tmp_path: Path, repo: Path) -> None:
    """The commented Slack, e-mail and PagerDuty examples are valid once uncommented."""
    text = (repo / "alertmanager/alertmanager.yml").read_text()
    head, examples = text.split("  # --- examples:")
    block = []
    for line in examples.splitlines()[1:]:
        if line.startswith("  # and, to page"):
            break
        block.append(re.sub(r"^  # ?", "  ", line))
    path = tmp_path / "alertmanager.yml"
    path.write_text(head + "\n".join(block) + "\n")
    out = run_tool(["amtool", "check-config", str(path)])
    assert "4 receivers" in out
