"""The drill-down's "Now (live judgement)" row: the thresholds judged over the last minute.

The service judges every running scenario each second over its live window
(``LOADSVC_LIVE_WINDOW``, 60 s by default; :mod:`loadsvc.live`) and exports
``loadsvc_live_threshold_breached`` and ``_value``. The row shows them with the
configured limits beside the values, so a breach shows here within about a
minute, as on the status page, instead of when the verdict window ends.
"""

from __future__ import annotations

from loadsvc.metrics import NAMES
from loadsvc.render.panels import Board, Query, stat, timeseries
from loadsvc.render.promql import THRESHOLD_LIMIT_RECORD

S = 'scenario="$scenario"'
LATENCIES = 'threshold=~"http_latency|ws_delivery_latency"'


def _running(expr: str) -> str:
    """``expr`` only while the scenario runs: its live gauges read 0 once it stops, which is
    no judgement at all, so the panel shows no data rather than "nothing breached"."""
    return f"{expr}\nand on () max({NAMES.scenario_running}{{{S}}}) == 1"


def _live_and_limit(threshold: str) -> list[Query]:
    return [
        Query(
            f"max by (endpoint, threshold) ({NAMES.live_threshold_value}{{{S}, {threshold}}})",
            "{{endpoint}} {{threshold}} now",
        ),
        Query(
            f"{THRESHOLD_LIMIT_RECORD}{{{S}, {threshold}}}",
            "{{endpoint}} {{threshold}} limit",
        ),
    ]


def live_row(board: Board) -> None:
    """How many thresholds fail now, which, and the live latency and error ratio vs limit."""
    board.row("Now: live judgement over the last minute")
    board.add(
        stat(
            "Now: thresholds breached",
            "Thresholds that do not hold over the running scenario's live window (the last "
            "minute by default; the status page says the same). No data: not running.",
            "none",
            [
                Query(
                    _running(
                        f"sum(max by (endpoint, threshold) "
                        f"({NAMES.live_threshold_breached}{{{S}}}))"
                    ),
                    "breached",
                    instant=True,
                )
            ],
            limit=1,
            width=4,
            height=8,
        ),
        timeseries(
            "Now: breached, by threshold",
            "1 while the threshold does not hold over the live window.",
            "none",
            [
                Query(
                    _running(
                        f"max by (endpoint, threshold) ({NAMES.live_threshold_breached}{{{S}}})"
                    ),
                    "{{endpoint}} {{threshold}}",
                )
            ],
            width=6,
        ),
        timeseries(
            "Now: latency vs limit",
            "The latency quantile each threshold judges, over the live window (1 % "
            "resolution), and the configured limit.",
            "s",
            _live_and_limit(LATENCIES),
            width=7,
        ),
        timeseries(
            "Now: error ratio vs limit",
            "The error ratio over the live window and the configured limit.",
            "percentunit",
            _live_and_limit('threshold="error_ratio"'),
            width=7,
        ),
    )
