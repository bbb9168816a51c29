"""The metric table: create_metrics, the --workers merge modes and build info come from it."""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from loadsvc.metrics import (
    CONTRACT,
    GAUGE_MERGE,
    LATENCY_BUCKETS,
    NAMES,
    SAMPLE_NAMES,
    Metrics,
    create_build_info,
    create_metrics,
)

_TYPES = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


def test_create_metrics_builds_every_row_of_the_table() -> None:
    """Each run and service row becomes the Metrics field it names, with its type, labels, help."""
    m = create_metrics(CollectorRegistry(), service=True)
    for spec in CONTRACT:
        if spec.group == "process":
            continue
        metric = getattr(m, spec.field)
        assert isinstance(metric, _TYPES[spec.type]), spec.field
        assert metric._name == spec.name and metric._labelnames == spec.labels, spec.field
        assert metric._documentation == spec.help, spec.field


def test_metrics_fields_are_the_tables_rows() -> None:
    """The Metrics dataclass has a field for every run and service row, and no other metric."""
    fields = {f.name for f in dataclasses.fields(Metrics)} - {"multiprocess"}
    assert fields == {s.field for s in CONTRACT if s.group != "process"}
    assert len({s.name for s in CONTRACT}) == len(CONTRACT)


def test_service_metrics_only_when_asked() -> None:
    """Without service=True the configuration-reload metrics are not registered (the front's own)."""
    registry = CollectorRegistry()
    m = create_metrics(registry)
    assert m.config_reloads is None and m.config_last_reload_successful is None
    Counter("loadsvc_config_reloads", "registered by someone else", registry=registry)


def test_latency_thresholds_become_bucket_boundaries() -> None:
    """Configured latency thresholds are buckets of both latency histograms, beside the defaults."""
    registry = CollectorRegistry()
    m = create_metrics(registry, [0.123])
    m.http_request_duration.labels("s", "/e", "GET").observe(0.12)
    m.ws_message_latency.labels("s", "/ws").observe(0.12)
    for name, labels in (
        ("loadsvc_http_request_duration_seconds", {"scenario": "s", "endpoint": "/e", "method": "GET"}),
        ("loadsvc_ws_message_latency_seconds", {"scenario": "s", "endpoint": "/ws"}),
    ):  # fmt: skip
        bucket = registry.get_sample_value(f"{name}_bucket", {**labels, "le": "0.123"})
        below = registry.get_sample_value(f"{name}_bucket", {**labels, "le": "0.1"})
        assert (bucket, below) == (1.0, 0.0)
    assert {0.1, 0.2} <= set(LATENCY_BUCKETS)


def test_gauge_merge_modes_come_from_the_table() -> None:
    """Every gauge of a worker has the merge mode its row gives; single-process gauges keep 'all'."""
    assert set(GAUGE_MERGE) == {s.name for s in CONTRACT if s.type == "gauge" and s.merge}
    assert GAUGE_MERGE["loadsvc_ws_connections"] == "livesum"
    assert GAUGE_MERGE["loadsvc_scenario_last_run_timestamp_seconds"] == "max"
    worker = create_metrics(CollectorRegistry(), multiprocess=True, service=True)
    single = create_metrics(CollectorRegistry())
    for spec in CONTRACT:
        if spec.type == "gauge" and spec.group != "process":
            assert getattr(worker, spec.field)._multiprocess_mode == spec.merge, spec.field
        if spec.type == "gauge" and spec.group == "run":
            assert getattr(single, spec.field)._multiprocess_mode == "all", spec.field


def test_build_info_is_one_series_with_version_and_shard() -> None:
    """create_build_info exports loadsvc_build_info{version, shard} 1 from its table row."""
    registry = CollectorRegistry()
    create_build_info(registry, "1/3")
    samples = [s for m in registry.collect() for s in m.samples]
    assert [(s.name, s.labels["shard"], s.value) for s in samples] == [
        ("loadsvc_build_info", "1/3", 1.0)
    ]


def test_exposed_names_follow_the_type() -> None:
    """NAMES gives counters their _total; SAMPLE_NAMES holds every suffix a type exposes."""
    assert NAMES.http_requests == "loadsvc_http_requests_total"
    assert NAMES.ws_connections == "loadsvc_ws_connections"
    assert "loadsvc_ws_connect_duration_seconds_bucket" in SAMPLE_NAMES
    assert "loadsvc_ws_connections_total" not in SAMPLE_NAMES
    registry = CollectorRegistry()
    create_metrics(registry, service=True)
    exposed = {s.name for m in registry.collect() for s in m.samples}
    assert exposed <= SAMPLE_NAMES
