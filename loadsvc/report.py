"""How a finished run is told: the summary JSON document and the summary table."""

from __future__ import annotations

from typing import Any

from loadsvc.headline import (
    excess_of,
    excess_text,
    final_line,
    generator_line,
    judgement_line,
    live_headline,
)
from loadsvc.lag import Timing, rule_of
from loadsvc.lag import arrival_clock as arrival_clock
from loadsvc.latency import HISTOGRAM_SCHEME, CompactHistogram
from loadsvc.live import LiveVerdict
from loadsvc.protocols import protocol_of
from loadsvc.runner import RunResult
from loadsvc.runstats import EndpointSummary
from loadsvc.shortfall import LoadShortfall
from loadsvc.verdict import REPORTED_QUANTILES, Judgement


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def histogram_doc(h: CompactHistogram) -> dict[str, Any]:
    """A compact latency histogram in the summary JSON: what a baseline comparison tests."""
    return {"scheme": HISTOGRAM_SCHEME, "start": h[0], "counts": list(h[1])}


def endpoint_doc(s: EndpointSummary, timing: Timing | None = None) -> dict[str, Any]:
    """One endpoint of the summary JSON (latencies in ms; WS latency is delivery latency);
    with the run's ``timing``, which lag rule judges its latency and what that excuses."""
    doc: dict[str, Any] = {
        "endpoint": s.endpoint,
        "kind": s.kind,
        "method": s.method or None,
        "count": s.count,
        "errors": s.errors,
        "error_rate": round(s.error_ratio, 6),
        "p50_ms": _ms(s.p50_s),
        "p95_ms": _ms(s.p95_s),
        "p99_ms": _ms(s.p99_s),
        "max_ms": _ms(s.max_s),
        "per_second": round(s.rate, 3),
        "outcomes": dict(s.outcomes),
        # 429s (also in errors and outcomes) and the waits they imposed: load refused
        "rate_limited": s.outcome("rate_limited"),
        "rate_limit_waits": s.rate_limit_waits,
        "rate_limit_wait_s": round(s.rate_limit_wait_s, 3),
        # What went wrong, for a person: e.g. {"reason": "tls", "detail": "certificate ...", "count": 20}
        "diagnostics": [{"reason": r, "detail": d, "count": n} for r, d, n in s.diagnostics],
        "events": s.events,
        "latency_histogram": histogram_doc(s.latency_histogram),
        # What timed arrivals: "kernel" (the socket's receive stamps), "loop", "mixed", or
        # None before any; the counts are WS connections or REST responses since the start.
        "arrival_clock": arrival_clock(s.arrival_clocks),
        "arrival_clocks": dict(s.arrival_clocks),
    }
    if timing is not None:
        rule = rule_of(doc["arrival_clock"], protocol_of(s.kind).latency.name)
        # loadsvc.lag: "kernel" (only frames sharing a read can move its times) or "loop";
        # generator_ms: what the generator may have added to its latencies (taken off
        # before a baseline comparison).
        excusable = timing.excusable_s(rule, s.endpoint)
        doc.update(lag_rule=rule, generator_ms=None if excusable is None else _ms(excusable))
        # Per quantile: frames that shared a read move each quantile by what they can, not
        # by their whole wait (loadsvc.lag.ReadTiming); a baseline comparison takes this off.
        by_quantile = {
            f"p{q * 100:g}": timing.excusable_s(rule, s.endpoint, q) for q in REPORTED_QUANTILES
        }
        doc["generator_ms_by_quantile"] = {
            k: None if v is None else _ms(v) for k, v in by_quantile.items()
        }
    if protocol_of(s.kind).connections:
        mpc = s.messages_per_second_per_connection
        doc.update(
            messages_per_second_per_connection=None if mpc is None else round(mpc, 3),
            connects=s.connects,
            connection_errors=s.connection_errors,
            missed=s.missed,
            status_messages=s.status_messages,
            reconnect_p95_ms=_ms(s.reconnect_p95_s),
            sequence_anomalies=dict(s.sequence_anomalies),
            # min(arrival - publish stamp): negative means the server's clock is ahead
            clock_offset_ms=_ms(s.clock_offset_min_s),
            connection_seconds=round(s.connection_seconds, 3),
            reconnect_histogram=histogram_doc(s.reconnect_histogram),
        )
    return doc


# Thresholds whose value and limit are not times: their unit in the summary JSON.
_UNITLESS = {
    "error_ratio": "ratio",
    "ws_missed_ratio": "ratio",
    "ws_delivery_rate": "msg/s per connection",
    "ws_stalled": "stalls",
}


def judgement_doc(j: Judgement) -> dict[str, Any]:
    """One threshold of the summary JSON: latencies in ms, error ratio as a fraction."""
    doc: dict[str, Any] = {
        "endpoint": j.endpoint,
        "kind": j.kind,
        "name": j.name,
        "quantile": j.quantile,
        "passed": j.passed,
        "state": j.state,
        "description": j.describe(),
        "headline": judgement_line(j),
    }
    over = excess_of(j)
    if over is not None:  # in the threshold's own unit below, and in words
        doc["excess_text"] = excess_text(j)
    if j.name in _UNITLESS:
        value = None if j.value is None else round(j.value, 6)
        doc.update(unit=_UNITLESS[j.name], limit=j.limit, value=value)
        if over is not None:
            doc["excess"] = round(over, 6)
    elif j.name == "clock_skew":
        # value: the clock offset; limit: skewed frames allowed (none)
        doc.update(unit="ms", limit=0, value=_ms(j.value), skewed=j.skewed, hint=j.hint)
    else:
        doc.update(unit="ms", limit=_ms(j.limit), value=_ms(j.value))
        doc.update(samples=j.samples, min_samples=j.min_samples)
        if over is not None:
            doc["excess"] = _ms(over)
    return doc


def live_doc(verdict: LiveVerdict) -> dict[str, Any]:
    """The ``live`` part of a scenario in ``/api/status``: the result, each threshold, its words."""
    judgements = []
    for lj in verdict.judgements:
        doc = judgement_doc(lj.judgement)
        doc.update(since=lj.since, headline=judgement_line(lj.judgement, lj.since))
        judgements.append(doc)
    return {
        "window_s": verdict.window_s,
        "covered_s": round(verdict.covered_s, 3),
        "result": verdict.result,
        "judged_at": verdict.judged_at,
        "headline": live_headline(verdict),
        "loop_lag_p99_ms": None if verdict.lag_p99_s is None else round(verdict.lag_p99_s * 1e3, 3),
        "loop_lag_limit_ms": None
        if verdict.lag_limit_s is None
        else round(verdict.lag_limit_s * 1e3, 3),
        "busy": verdict.busy,
        "generator": generator_line(verdict.lag_p99_s, verdict.lag_limit_s, reads=verdict.reads),
        "thresholds": judgements,
    }


def summary_doc(run: RunResult, target_url: str) -> dict[str, Any]:
    """The summary JSON of a run (``loadsvc run --summary-json``, run history, /api/runs)."""
    return {
        "scenario": run.scenario,
        "run_id": run.run_id,
        "passed": run.passed,
        "result": run.result,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_s": round(run.ended_at - run.started_at, 3),
        "planned_s": run.planned_s,
        "stopped_early": run.stopped_early,
        "target": target_url,
        "shard": run.shard,
        "loop_lag_p99_ms": _ms(run.loop_lag_p99_s),
        "loop_lag_limit_ms": _ms(run.loop_lag_limit_s),
        "generator": generator_line(run.loop_lag_p99_s, run.loop_lag_limit_s, reads=run.reads),
        "generator_busy": generator_busy(run),
        # The kernel rule (loadsvc.lag): stamp-to-read delay p99 of the window's stamped
        # reads, frames that shared a read, and what that lets the generator excuse.
        "read_delay_p99_ms": _ms(run.reads.read_delay_p99_s),
        "frames_sharing_a_read": run.reads.shared_frames,
        "read_delay_ms": _ms(run.reads.delay_s) if run.reads.busy else 0.0,
        # Users the generator started more than a tick late (loadsvc.shortfall).
        "late_starts": starts_doc(run.starts),
        "reasons": list(run.reasons),
        "endpoints": [endpoint_doc(s, run.timing) for s in run.endpoints],
        "thresholds": [judgement_doc(j) for j in run.verdict.judgements],
    }


def starts_doc(starts: LoadShortfall) -> dict[str, Any]:
    """A window's late starts against the load its shape asked for, and whether they left
    it short (then the window cannot pass)."""
    return {
        "users": starts.late,
        "user_seconds_missed": round(starts.late_user_s, 3),
        "latest_s": round(starts.worst_s, 3),
        "user_seconds_asked": round(starts.asked_user_s, 3),
        "short": starts.short,
    }


def _endpoint_details(s: EndpointSummary) -> list[str]:
    """Lines that say what went wrong at an endpoint beyond the table: only when something did."""
    out: list[str] = []
    failed = [(name, n) for name, n in s.outcomes if name not in ("ok", "status") and n]
    if failed:
        out.append(f"  {s.endpoint} outcomes: " + ", ".join(f"{k} {n}" for k, n in failed))
    out.extend(
        f"  {s.endpoint} {reason}: {detail} ({n} times)" for reason, detail, n in s.diagnostics
    )
    if s.sequence_anomalies:
        shown = ", ".join(f"{k} {n}" for k, n in s.sequence_anomalies if n)
        if shown:
            out.append(f"  {s.endpoint} sequence anomalies: {shown}")
    if s.clock_offset_min_s is not None and s.outcome("skewed"):
        out.append(
            f"  {s.endpoint} clock offset min {s.clock_offset_min_s:.3f} s "
            "(arrival minus publish stamp; negative: the server's clock is ahead)"
        )
    return out


def _fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def summary_body(run: RunResult) -> str:
    """A plain-text table of the run, what went wrong, each threshold, the generator's health."""
    head = (
        "endpoint",
        "kind",
        "count",
        "errors",
        "err%",
        "/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "msg/s/conn",
    )
    rows = [head]
    for s in run.endpoints:
        mpc = s.messages_per_second_per_connection
        rows.append(
            (
                s.endpoint, s.kind, str(s.count), str(s.errors), f"{s.error_ratio * 100:.2f}",
                f"{s.rate:.1f}", _fmt_ms(s.p50_s), _fmt_ms(s.p95_s), _fmt_ms(s.p99_s),
                "-" if mpc is None else f"{mpc:.2f}",
            )
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    details = [line for s in run.endpoints for line in _endpoint_details(s)]
    if details:
        lines.append("")
        lines.extend(details)
    lines.append("")
    lines.extend(("  " if j.passed else "! ") + j.describe() for j in run.verdict.judgements)
    lines.append(generator_line(run.loop_lag_p99_s, run.loop_lag_limit_s, reads=run.reads))
    if run.starts.late:
        lines.append(run.starts.line())
    return "\n".join(lines)


def summary_table(run: RunResult) -> str:
    """:func:`summary_body`, then the final line (:func:`loadsvc.headline.final_line`)."""
    final = final_line(
        run.scenario, run.result, regressed=False, busy=busy_reason(run), short=short_reason(run)
    )
    return summary_body(run) + "\n\n" + final


def short_reason(run: RunResult) -> str:
    """Why the run's load was short of its shape's (users started late), or ``""``."""
    return run.starts.reason(breached=not run.verdict.passed) if run.starts.short else ""


def generator_busy(run: RunResult) -> bool:
    """The run's generator was busy under either rule of :mod:`loadsvc.lag`: its window's loop
    lag p99 over the trust limit, or frames of a kernel-timed endpoint that shared a read."""
    kernel = any(
        rule_of(arrival_clock(s.arrival_clocks), protocol_of(s.kind).latency.name) == "kernel"
        for s in run.endpoints
    )
    return run.timing.busy("loop") or (kernel and run.timing.busy("kernel"))


def busy_reason(run: RunResult) -> str:
    """What the busy generator means for the run's breaches (judge_window's last reason when
    busy: within the lag, or how far beyond it), or ``""`` when it was not busy."""
    if run.verdict.passed or not generator_busy(run) or not run.reasons:
        return ""
    return run.reasons[-1]
