"""The words of loadsvc/headline.py: generic over Judgement fields, and a final line that never
says PASSED where the exit code says 1."""

from __future__ import annotations

import pytest

from loadsvc.headline import final_line, final_state, judgement_line, state_colour, state_word
from loadsvc.verdict import Judgement


def test_a_threshold_added_later_reads_with_value_limit_and_excess() -> None:
    """A judgement name this module has never seen (reconnect_p95) still reads measured vs limit."""
    j = Judgement("/ws/m", "ws", "reconnect_p95", 0.5, 0.8, "breached", quantile=0.95)  # type: ignore[arg-type]
    assert (
        judgement_line(j)
        == "/ws/m reconnect_p95 p95 800.0 ms vs limit 500 ms: +300.0 ms (+60 %) over"
    )
    ok = Judgement("/api/x", "http", "error_ratio", 0.01, 0.002, "passed")
    assert (
        judgement_line(ok, since=0.0) == "/api/x error_ratio 0.20 % within 1 %"
    )  # no "since" when ok


@pytest.mark.parametrize(
    ("result", "regressed", "exit_code", "last"),
    [
        ("passed", False, 0, "s: PASSED"),
        ("passed", True, 1, "s: FAILED (regressed against the baseline, under every threshold)"),
        ("failed", True, 1, "s: FAILED (regressed against the baseline)"),
        ("failed", False, 1, "s: FAILED"),
    ],
)
def test_the_final_line_matches_the_exit_code(
    result: str, regressed: bool, exit_code: int, last: str
) -> None:
    """PASSED exactly when the exit code is 0; a regression reads as a failure."""
    assert final_line("s", result, regressed) == last
    assert (final_state(result, regressed) == "passed") == (exit_code == 0)


def test_generator_bound_is_never_passed() -> None:
    """A generator-bound run reads GENERATOR-BOUND in amber with why, never PASSED."""
    line = final_line("s", "generator_bound", False)
    assert line.startswith("s: GENERATOR-BOUND (") and "PASSED" not in line
    assert state_colour("generator_bound") == "amber" and state_word("no_data") == "NO DATA"
