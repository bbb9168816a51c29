"""The drill-down's "Now vs baseline" row: the latency now against the baseline of past runs."""

from __future__ import annotations

from loadsvc.render.panels import Board, Query, timeseries
from loadsvc.render.promql import LATENCY_HISTOGRAMS

S = 'scenario="$scenario"'
RATE = "[$__rate_interval]"


def baseline_row(board: Board) -> None:
    """p95 now (from the histograms) with the baseline median loadsvc judged the last run by."""
    now = [
        Query(
            f"histogram_quantile(0.95, sum by (endpoint, le) (rate({h}_bucket{{{S}}}{RATE})))",
            "{{endpoint}} p95 now",
        )
        for h in LATENCY_HISTOGRAMS
    ]
    board.row("Now vs baseline")
    board.add(
        timeseries(
            "p95 latency now vs baseline",
            "p95 latency now, and the baseline of the last judged run: the median p95 of "
            "the comparable past runs (a regression is beyond +50 % and +10 ms of it, "
            "confirmed by the run's own samples).",
            "s",
            [
                *now,
                Query(
                    f'max by (endpoint) (loadsvc_baseline_value{{{S}, metric="p95"}})',
                    "{{endpoint}} p95 baseline",
                ),
            ],
        ),
        timeseries(
            "Regressions of the last run",
            "1 while the last run regressed on the metric against its baseline "
            "(LoadsvcLatencyRegression, LoadsvcRegression).",
            "none",
            [
                Query(
                    f"max by (endpoint, metric) (loadsvc_regression_detected{{{S}}})",
                    "{{endpoint}} {{metric}}",
                )
            ],
        ),
    )
