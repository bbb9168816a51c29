"""Every metric a generated rule or dashboard names is in the metric contract's table."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from loadsvc.config.load import load_default
from loadsvc.metrics import CONTRACT, SAMPLE_NAMES
from loadsvc.render import rendered_files

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_EXPR_KEYS = {"expr", "query", "definition"}


def metric_names(expr: str) -> set[str]:
    """The metric and recorded-series names a PromQL expression refers to (not label values)."""
    bare = _STRING.sub('""', expr)
    return {t for t in _IDENT.findall(bare) if t.startswith("loadsvc_") or ":" in t}


def _exprs(node: Any) -> Iterator[str]:
    """Every PromQL string in a parsed rule file or dashboard (rule ``expr``, target ``expr``,
    template ``query``/``definition``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _EXPR_KEYS and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def _records(node: Any) -> set[str]:
    """The names of the recording rules in a parsed rule file."""
    if not isinstance(node, dict) or "groups" not in node:
        return set()
    return {r["record"] for g in node["groups"] for r in g["rules"] if "record" in r}


def _generated() -> list[tuple[str, Any]]:
    docs = []
    for path, text in rendered_files(load_default()).items():
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        docs.append((path.as_posix(), doc))
    return docs


def unknown_names(docs: list[tuple[str, Any]]) -> dict[str, set[str]]:
    """Per file, the names its expressions use that are neither in the table nor recorded."""
    recorded = set().union(*(_records(doc) for _, doc in docs))
    unknown: dict[str, set[str]] = {}
    for path, doc in docs:
        names = set().union(*(metric_names(e) for e in _exprs(doc)))
        bad = {n for n in names if n not in SAMPLE_NAMES and n not in recorded}
        if bad:
            unknown[path] = bad
    return unknown


def test_every_rendered_expression_names_a_metric_of_the_table() -> None:
    """No generated rule or dashboard query names a loadsvc_* series the table does not define."""
    docs = _generated()
    exprs = [e for _, doc in docs for e in _exprs(doc)]
    assert len(exprs) > 50  # the rules and both dashboards were parsed
    assert unknown_names(docs) == {}


def test_the_rendered_files_use_most_of_the_table() -> None:
    """The dashboards and rules show the contract: a metric dropped from them is noticed here."""
    used = set().union(*(metric_names(e) for _, doc in _generated() for e in _exprs(doc)))
    shown = {m.name for m in CONTRACT if set(m.sample_names()) & used}
    unshown = {m.name for m in CONTRACT} - shown
    # Kept for people's own queries and the front's merge; not on a panel or in a rule.
    assert unshown == {
        "loadsvc_threshold_limit",  # the rules record the configured limits from the config
        "loadsvc_ws_sequence_anomalies",
        "loadsvc_ws_clock_offset_seconds",
        "loadsvc_arrival_clock_info",  # which clock timed an endpoint (also in the summary)
        # The kernel rule's figures (loadsvc.lag), also in the summary and /api/status.
        "loadsvc_generator_read_delay_p99_seconds",
        "loadsvc_generator_frames_sharing_a_read",
        "loadsvc_run_records_failed",
        "loadsvc_baseline_runs",  # on /api/status; "no baseline yet" below the minimum
        "loadsvc_baseline_records_skipped",  # each is logged with the field at fault
        "loadsvc_open_sockets",  # sampled by make soak; descriptors are alerted on instead
        "loadsvc_python_heap_blocks",  # sampled by make soak; memory is alerted on as RSS
        "loadsvc_python_heap_blocks_after_full_gc",  # the soak's honest heap reading
        "loadsvc_python_full_collections",  # how fresh that reading is
        "loadsvc_python_cyclic_garbage",  # the soak's garbage per restart cycle
        "loadsvc_python_sweeps",  # the soak: how fresh the sweep's reading is
        "loadsvc_python_heap_blocks_at_sweep",  # the soak: the heap with no garbage at all
        "loadsvc_python_sweep_garbage",  # the soak: the objects the collector counted
        "loadsvc_python_sweep_freed_blocks",  # the soak: the frozen garbage a sweep freed
        "loadsvc_python_full_gc_freed_blocks",  # what the sweep's fall was judged against
        "loadsvc_malloc_trims",  # the soak: what the trims at sweeps gave back, and cost
        "loadsvc_malloc_trim_seconds",
        "loadsvc_malloc_trim_released_bytes",
        "loadsvc_config_reloads",
        "loadsvc_config_last_reload_successful",
        "loadsvc_scenario_late_start_seconds",  # the count is on a panel; this, in the summary
        "loadsvc_build_info",
        # Read by the failed-run alert's description (a template query), not by an expression.
        "loadsvc_scenario_last_run_generator_bound",
        # The waits 429s imposed: in the summary (rate_limit_waits); the 429s themselves are
        # on the panels and in the error ratio as outcome="rate_limited".
        "loadsvc_http_rate_limit_waits",
        "loadsvc_http_rate_limit_wait_seconds",
    }


def test_a_name_outside_the_table_is_reported() -> None:
    """The check names a misspelt metric and a missing record, and ignores label values."""
    docs = [
        ("rules.yml", {"groups": [{"rules": [
            {"record": "scenario:loadsvc_ok:rate5m", "expr": "rate(loadsvc_http_requests_total[5m])"},
            {"alert": "A", "expr": 'loadsvc_http_request_total{outcome="loadsvc_nope"} > 0'},
        ]}]}),
        ("dash.json", {"panels": [{"targets": [
            {"expr": "scenario:loadsvc_ok:rate5m + scenario:loadsvc_gone:rate5m"},
            {"expr": "histogram_quantile(0.99, rate(loadsvc_ws_message_latency_seconds_bucket[1m]))"},
        ]}]}),
    ]  # fmt: skip
    assert unknown_names(docs) == {
        "rules.yml": {"loadsvc_http_request_total"},
        "dash.json": {"scenario:loadsvc_gone:rate5m"},
    }
