"""The words loadsvc says what is wrong in: one source for the page, the report and the terminal.

Every sentence is made from a :class:`~loadsvc.verdict.Judgement`'s fields
(endpoint, name, quantile, value, limit, state), so a threshold added later
reads the same way without a change here. A state is one word and one colour.
Pure functions, no clock: times are given.

>>> from loadsvc.verdict import Judgement
>>> j = Judgement("/api/x", "http", "http_latency", 0.2, 0.3124, "breached", quantile=0.95)
>>> judgement_line(j, since=0.0)
'/api/x http_latency p95 312.4 ms vs limit 200 ms: +112.4 ms (+56 %) over since 00:00:00 UTC'
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from loadsvc.lag import ReadTiming, is_busy

if TYPE_CHECKING:
    from loadsvc.live import LiveVerdict
    from loadsvc.verdict import Judgement

# Each state: the word said and the colour it is shown in (the CSS class is ``state-<colour>``).
STATES: dict[str, tuple[str, str]] = {
    "passed": ("PASSED", "green"),
    "ok": ("OK", "green"),
    "failed": ("FAILED", "red"),
    "breached": ("BREACHED", "red"),
    "no_data": ("NO DATA", "red"),
    "regressed": ("REGRESSED", "red"),
    "error": ("ERROR", "red"),
    "generator_bound": ("GENERATOR-BOUND", "amber"),
    "incomplete": ("INCOMPLETE", "amber"),
    "stopped_early": ("CUT SHORT", "grey"),
    "starting": ("STARTING", "grey"),
    "idle": ("IDLE", "grey"),
}


def state_word(state: str) -> str:
    """The one word a state is said in (``failed`` -> ``FAILED``)."""
    return STATES.get(state, (state.upper().replace("_", " "), "grey"))[0]


def state_colour(state: str) -> str:
    """The colour a state is shown in: green, amber, red or grey."""
    return STATES.get(state, ("", "grey"))[1]


def unit_of(j: Judgement) -> str:
    """``s`` for a time, ``ratio`` for a share, ``""`` for a plain number (from the name)."""
    unit = getattr(j, "unit", None)  # a threshold kind may say its own
    if isinstance(unit, str):
        return unit
    if j.name.endswith("ratio") or j.name.endswith("rate_drop"):
        return "ratio"
    if j.name.endswith("delivery_rate"):
        return "msg/s"
    if "latency" in j.name or "reconnect" in j.name or j.name.endswith(("_time", "stall")):
        return "s"
    return ""


def show(value: float | None, unit: str) -> str:
    """A measured value or limit for a person: ``312.4 ms``, ``5.00 %``, ``2.5``."""
    if value is None:
        return "no data"
    if unit == "s":
        return f"{value * 1000:.1f} ms"
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    if unit == "msg/s":
        return f"{value:.2f} msg/s"
    return f"{value:g}"


def _limit(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:g} ms"
    if unit == "ratio":
        return f"{value * 100:g} %"
    return f"{value:g}"


# Judgements whose limit is a floor: the value breaches by falling below it.
FLOORS = frozenset({"ws_delivery_rate"})


def excess_of(j: Judgement) -> float | None:
    """How far past its limit a breached judgement's value is (its unit; for a floor, how far
    below it), else None."""
    if j.state != "breached" or j.value is None or j.name == "clock_skew":
        return None
    return j.limit - j.value if j.name in FLOORS else j.value - j.limit


def clock_time(ts: float) -> str:
    """A wall-clock time with its zone: ``09:32:05 UTC``."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(ts))


def excess_text(j: Judgement) -> str | None:
    """How far past its limit a breach is, in words: ``+112.4 ms (+56 %)`` (None: within)."""
    over = excess_of(j)
    if over is None:
        return None
    unit = unit_of(j)
    sign = "-" if j.name in FLOORS else "+"
    if unit == "ratio":
        return f"{sign}{over * 100:.2f} pp"
    share = f" ({sign}{over / j.limit * 100:.0f} %)" if j.limit > 0 else ""
    return f"{sign}{show(over, unit)}{share}"


def judgement_line(j: Judgement, since: float | None = None) -> str:
    """One threshold in words: measured vs limit, the excess, and since when it has not held."""
    if j.name == "clock_skew" or j.state == "no_data":
        text = j.describe()
    else:
        unit = unit_of(j)
        q = f" p{j.quantile * 100:g}" if j.quantile is not None else ""
        text = f"{j.endpoint} {j.name}{q} {show(j.value, unit)}"
        over = excess_text(j)
        if over is None:
            text += f" within {_limit(j.limit, unit)}"
        else:
            text += f" vs limit {_limit(j.limit, unit)}: {over} over"
    if since is not None and not j.passed:
        text += f" since {clock_time(since)}"
    return text


def generator_line(
    lag_p99_s: float | None,
    limit_s: float | None,
    span_s: float | None = None,
    reads: ReadTiming | None = None,
) -> str:
    """The generator's health in words: is its own event-loop lag small enough to trust it,
    and (with ``reads``, kernel-stamped reads) did it keep up with its frames?

    ``span_s`` names the span the lag p99 was taken over when it is not the context's own
    (the status page's generator: the last 10 s, not a run or a live window)."""
    if lag_p99_s is None or limit_s is None:
        return "generator: not watched"
    lag = f"event-loop lag p99 {lag_p99_s * 1000:.1f} ms"
    over = "" if span_s is None else f" in the last {span_s:g} s"
    if is_busy(lag_p99_s, limit_s):
        line = f"generator BUSY: {lag}{over} over its trust limit {limit_s * 1000:g} ms"
    else:
        line = f"generator healthy: {lag}{over} (trust limit {limit_s * 1000:g} ms)"
    return line + _reads_text(reads)


def _reads_text(reads: ReadTiming | None) -> str:
    """The kernel rule's part of :func:`generator_line` ("" without stamped reads)."""
    if reads is None or (reads.read_delay_p99_s is None and not reads.busy):
        return ""
    delay = reads.read_delay_p99_s or 0.0
    if reads.busy:
        # Not "behind" alone: frames a backend writes together share a read too, and each
        # quantile is excused only by what they can move it (loadsvc.lag.ReadTiming).
        return (
            f"; kernel-timed frames SHARED READS: {reads.shared_frames} (the generator behind "
            f"them, or they came together; waited up to {reads.delay_s * 1000:.1f} ms)"
        )
    return f"; kernel-timed reads kept up (stamp-to-read p99 {delay * 1000:.1f} ms)"


def live_headline(verdict: LiveVerdict) -> str:
    """A running scenario in one line: the state word over the window, then what breached."""
    head = f"{state_word(verdict.result)} over the last {verdict.window_s:g} s"
    if verdict.result == "starting":
        return head + f" ({verdict.covered_s:.0f} s seen so far)"
    breaches = [judgement_line(lj.judgement, lj.since) for lj in verdict.breached()]
    text = head + (": " + "; ".join(breaches) if breaches else "")
    if verdict.busy:  # said, whatever the result: a busy generator's numbers are less certain
        text += "; " + generator_line(verdict.lag_p99_s, verdict.lag_limit_s, reads=verdict.reads)
    if verdict.starts.short:
        text += "; " + verdict.starts.reason(breached=bool(breaches))
    return text


def final_state(result: str, regressed: bool, incomplete: bool = False) -> str:
    """The result a run ends with: a regression against its baseline fails it; a passed run
    whose comparison with its baseline left something out is incomplete (exit 3)."""
    if regressed and result == "passed":
        return "failed"
    if incomplete and result == "passed":
        return "incomplete"
    return result


def final_line(
    scenario: str,
    result: str,
    regressed: bool,
    busy: str = "",
    incomplete: bool = False,
    short: str = "",
) -> str:
    """The last line of ``loadsvc run``: the final result, which the exit code matches
    (0 only for PASSED); a regression against the baseline reads as a failure. ``busy`` is
    what a busy generator means for the breaches (:func:`loadsvc.report.busy_reason`): a
    generator-bound run says it breached and that the excess is not certain; a failed one
    says how far its breach goes beyond the lag. ``short``: the users the generator started
    late, when they left the load short of the shape's (:mod:`loadsvc.shortfall`)."""
    state = final_state(result, regressed, incomplete)
    why = ""
    if state == "incomplete":
        why = " (every threshold held, but not every metric could be compared with the baseline)"
    elif regressed:
        why = " (regressed against the baseline" + (
            ", under every threshold)" if result == "passed" else ")"
        )
    elif state == "generator_bound" and short and not busy:
        why = f" ({short})"  # every threshold held, under less load than asked for
    elif state == "generator_bound":
        why = (
            f" (breached; {busy})"
            if busy
            else " (breached; the generator's own lag may explain every breach, "
            "so the excess is not certain)"
        ) + (f"; {short}" if short else "")
    elif state == "failed":
        why = (f"; {busy}" if busy else "") + (f"; {short}" if short else "")
    return f"{scenario}: {state_word(state)}{why}"
