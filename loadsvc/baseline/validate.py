"""Is a past run's record fit to be a baseline? The checks a history line or a baseline file pass.

A baseline is made of what earlier runs wrote, and anything on disk can be
wrong: a hand-edited file, a line written by another tool in milliseconds, a
value of ``1e308``. One bad record must never switch detection off (a crash in
the comparison, a span of dates that cannot be printed) nor drag a baseline
(a negative latency). So every record is checked here before it is compared:
:func:`record_problem` names the first field that is wrong, or returns None.
Pure functions, no clock: the bounds on times are fixed dates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

from loadsvc.latency import HISTOGRAM_SCHEME

# Unix times a record may carry: 2000-01-01 .. 2100-01-01 (a time in ms is far past it).
EARLIEST_S = 946_684_800.0
LATEST_S = 4_102_444_800.0

# Per-endpoint numbers: each absent, null, or finite and >= 0; ratios also <= 1.
_AMOUNTS = (
    "count", "errors", "events", "p50_ms", "p95_ms", "p99_ms", "max_ms", "per_second",
    "messages_per_second_per_connection", "missed", "reconnect_p95_ms", "connection_seconds",
)  # fmt: skip
_COUNTS = frozenset({"count", "errors", "events", "missed"})
_RATIOS = ("error_rate",)
_HISTOGRAMS = ("latency_histogram", "reconnect_histogram")
_KINDS = ("http", "ws")


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def time_problem(doc: Mapping[str, Any], key: str) -> str | None:
    """Why ``doc[key]`` is not a Unix time in seconds between 2000 and 2100, or None."""
    value = doc.get(key)
    if not _number(value) or not math.isfinite(value):
        return f"{key}: not a number ({_shown(value)})"
    if not EARLIEST_S <= value <= LATEST_S:
        return f"{key}: {value!r} is not a Unix time in seconds (2000..2100)"
    return None


def _amount_problem(where: str, key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not _number(value) or not math.isfinite(value) or value < 0:
        return f"{where}.{key}: must be a finite number >= 0, got {_shown(value)}"
    if key in _COUNTS and not isinstance(value, int):
        return f"{where}.{key}: must be a whole number, got {value!r}"
    return None


def _histogram_problem(where: str, key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or value.get("scheme") != HISTOGRAM_SCHEME:
        return f"{where}.{key}: not a histogram of scheme {HISTOGRAM_SCHEME!r}"
    start, counts = value.get("start"), value.get("counts")
    if not isinstance(start, int) or start < 0 or not isinstance(counts, list):
        return f"{where}.{key}: start and counts must be a bucket index and a list"
    # Each count is checked where the histogram is read (stats.count_above): a bad one leaves
    # the metric untested, said as such; past histograms are never read at all.
    return None


def endpoint_problem(where: str, ep: Any) -> str | None:
    """Why one entry of ``endpoints`` cannot be compared, or None."""
    if not isinstance(ep, Mapping):
        return f"{where}: not an object"
    if not isinstance(ep.get("endpoint"), str) or not ep["endpoint"]:
        return f"{where}.endpoint: missing"
    if ep.get("kind") not in _KINDS:
        return f"{where}.kind: must be one of {', '.join(_KINDS)}, got {_shown(ep.get('kind'))}"
    for key in _AMOUNTS:
        value = ep.get(key)
        # The common case, checked without a call (serve checks thousands of records a window).
        if (
            value is None
            or (type(value) is int and value >= 0)
            or (type(value) is float and 0.0 <= value < math.inf and key not in _COUNTS)
        ):
            continue
        if problem := _amount_problem(where, key, value):
            return problem
    for key in _RATIOS:
        value = ep.get(key)
        if value is not None and (problem := _amount_problem(where, key, value)):
            return problem
        if _number(value) and value > 1:
            return f"{where}.{key}: a ratio must be <= 1, got {value!r}"
    for key in _HISTOGRAMS:
        if problem := _histogram_problem(where, key, ep.get(key)):
            return problem
    return None


def record_problem(doc: Any) -> str | None:
    """The first reason ``doc`` (a history record or a summary file) cannot enter a baseline.

    >>> record_problem({"scenario": "s", "started_at": 1.7e12, "ended_at": 1.7e9, "endpoints": []})
    'started_at: 1700000000000.0 is not a Unix time in seconds (2000..2100)'
    """
    if not isinstance(doc, Mapping):
        return "not a JSON object"
    if not isinstance(doc.get("scenario"), str):
        return f"scenario: missing or not a name ({_shown(doc.get('scenario'))})"
    for key in ("started_at", "ended_at"):
        if problem := time_problem(doc, key):
            return problem
    if doc["ended_at"] < doc["started_at"]:
        return "ended_at: before started_at"
    for key in ("loop_lag_p99_ms", "loop_lag_limit_ms"):
        if problem := _amount_problem("run", key, doc.get(key)):
            return problem.removeprefix("run.")
    endpoints = doc.get("endpoints")
    if not isinstance(endpoints, list):
        return "endpoints: not a list"
    for i, ep in enumerate(endpoints):
        if problem := endpoint_problem(f"endpoints[{i}]", ep):
            return problem
    return None


def _shown(value: Any) -> str:
    """A value in an error message, cut short (a hostile file cannot flood the output)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
