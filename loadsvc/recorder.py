"""The recorder: the one place results go, and the only writer of metrics.

Virtual users get small per-endpoint sinks from it (:mod:`loadsvc.recorder_sinks`,
implementing the ``HttpSink`` and ``WsSink`` protocols of :mod:`loadsvc.users.base`)
and never see Prometheus; the sinks feed the same result to the Prometheus metrics and
to the run's :class:`EndpointStats`.

The runner, the supervisor, the run records, the loop-lag monitor and the
service hand the recorder events (``run_started``, ``users``, ``loop_lag``,
...) instead of touching metrics themselves.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loadsvc.config.spec import EndpointRef, ScenarioSpec
from loadsvc.lag import GeneratorState
from loadsvc.latency import LatencySamples
from loadsvc.metricbatch import MetricBatches
from loadsvc.metrics import (
    CONTRACT,
    HTTP_ERROR_OUTCOMES,
    WS_ERROR_OUTCOMES,
    Metrics,
    declared_series,
)
from loadsvc.recorder_sinks import Clock, FailureTally, RecorderHttpSink, RecorderWsSink
from loadsvc.runstats import EndpointStats, EndpointSummary
from loadsvc.shortfall import StartsLedger
from loadsvc.verdict import Verdict

if TYPE_CHECKING:
    from loadsvc.live import LiveVerdict


@dataclass
class ScenarioStats:
    """The per-endpoint stats of one scenario's current run or verdict window."""

    spec: ScenarioSpec
    endpoints: dict[tuple[str, str, str], EndpointStats] = field(default_factory=dict)
    started_wall: float = 0.0
    # The run's starts against its shape (loadsvc.shortfall): the runner keeps it, the
    # verdict windows and the live judgement read it.
    starts: StartsLedger = field(default_factory=StartsLedger)

    def roll(self, now: float) -> list[tuple[EndpointSummary, LatencySamples]]:
        """Close the window of every endpoint."""
        return [s.roll(now) for s in self.endpoints.values()]

    def snapshot(self, now: float) -> list[EndpointSummary]:
        """Every endpoint's window so far (exact; not for every second)."""
        return [s.summary(now) for s in self.endpoints.values()]


class RunSinks:
    """The sinks of one run's endpoints: the ``users.base.EndpointSinks`` a user group wires."""

    def __init__(self, recorder: Recorder, stats: ScenarioStats) -> None:
        self._recorder = recorder
        self._stats = stats

    def http_sink(self, ref: EndpointRef) -> RecorderHttpSink:
        """The sink of a REST endpoint of the run."""
        return self._recorder.http_sink(self._stats, ref)

    def ws_sink(self, ref: EndpointRef) -> RecorderWsSink:
        """The sink of a WS endpoint of the run."""
        return self._recorder.ws_sink(self._stats, ref)


class Recorder:
    """Feeds results to the metrics and to the per-run stats; publishes verdicts."""

    def __init__(self, metrics: Metrics, clock: Clock = time.monotonic) -> None:
        self.metrics = metrics
        self.clock = clock
        self.failures = FailureTally()
        self.current: dict[str, ScenarioStats] = {}
        # The per-request and per-frame metric updates, added to Prometheus once per loop turn.
        self.batches = MetricBatches()
        m = metrics
        self.batches.watch((m.http_request_duration, m.http_requests, m.ws_message_latency,
                            m.ws_message_interval, m.ws_messages, m.ws_messages_missed))  # fmt: skip
        self._live: dict[str, set[tuple[str, str]]] = {}  # live judgements exported per scenario
        self._declare_process()

    def _declare_process(self) -> None:
        """The series of the process's own metrics (not per scenario) that exist from the start."""
        m = self.metrics
        for metric in CONTRACT:
            family = getattr(m, metric.field, None)
            if metric.declared and family is not None and "scenario" not in metric.labels:
                for values in itertools.product(*(v for _, v in metric.fixed)):
                    family.labels(*values)
        if m.config_last_reload_successful is not None:
            m.config_last_reload_successful.set(1)  # none was tried yet

    def declare(self, spec: ScenarioSpec) -> None:
        """Create every series the contract declares at start-up (at zero), so ratios have a
        denominator, and export the configured threshold limits."""
        m = self.metrics
        for metric in CONTRACT:
            if metric.declared and metric.labels[:1] == ("scenario",):
                family = getattr(m, metric.field)
                for values in declared_series(metric, spec):
                    family.labels(*values)
        for je in spec.judged_endpoints:
            for name, limit in je.limits.items():
                m.threshold_limit.labels(spec.name, je.endpoint, name).set(limit)

    def begin(self, spec: ScenarioSpec) -> ScenarioStats:
        """Start the stats of a run of ``spec`` (replacing any previous one)."""
        self.declare(spec)
        now = self.clock()
        stats = ScenarioStats(spec, started_wall=time.time())
        for je in spec.judged_endpoints:
            stats.endpoints[je.key] = EndpointStats.of(je, now)
        self.current[spec.name] = stats
        return stats

    def sinks(self, stats: ScenarioStats) -> RunSinks:
        """The sinks of a run's endpoints, for wiring its user groups."""
        return RunSinks(self, stats)

    def http_sink(self, stats: ScenarioStats, ref: EndpointRef) -> RecorderHttpSink:
        """The sink for one REST endpoint of a run."""
        ep = stats.endpoints[(ref.kind, ref.endpoint, ref.method)]
        return RecorderHttpSink(
            self.metrics, stats.spec.name, ref, ep, self.failures, self.batches.batch()
        )

    def ws_sink(self, stats: ScenarioStats, ref: EndpointRef) -> RecorderWsSink:
        """The sink for one WS endpoint of a run."""
        ep = stats.endpoints[(ref.kind, ref.endpoint, ref.method)]
        stall = ep.judged.thresholds.ws_stall
        return RecorderWsSink(
            self.metrics, stats.spec.name, ref, ep, self.failures, self.clock, stall,
            self.batches.batch(),
        )  # fmt: skip

    # -- run lifecycle events ----------------------------------------------------

    def run_started(self, scenario: str) -> None:
        """A run of ``scenario`` began."""
        self.metrics.scenario_running.labels(scenario).set(1)

    def users(self, scenario: str, running: int, target: int) -> None:
        """The runner reconciled: ``running`` users now, ``target`` asked for by the shape."""
        m = self.metrics
        m.scenario_target_users.labels(scenario).set(target)
        m.scenario_users.labels(scenario).set(running)

    def late_start(self, scenario: str, late_s: float) -> None:
        """A user of ``scenario`` started ``late_s`` after it was due, past its tick."""
        m = self.metrics
        m.scenario_late_starts.labels(scenario).inc()
        m.scenario_late_start_seconds.labels(scenario).inc(late_s)

    def run_ended(self, scenario: str) -> None:
        """A run of ``scenario`` ended (its users are gone; the verdict follows)."""
        m = self.metrics
        m.scenario_running.labels(scenario).set(0)
        m.scenario_users.labels(scenario).set(0)
        m.scenario_target_users.labels(scenario).set(0)

    def publish_verdict(
        self, scenario: str, verdict: Verdict, result: str, ws_endpoints: Iterable[str] = ()
    ) -> None:
        """Export a finished run's (or window's) verdict as metrics.

        ``ws_endpoints`` are the scenario's WS endpoints: one the verdict did not
        judge for clock skew shows no skew breach.
        """
        m = self.metrics
        for j in verdict.judgements:
            m.threshold_breached.labels(scenario, j.endpoint, j.name).set(0 if j.passed else 1)
            m.threshold_limit.labels(scenario, j.endpoint, j.name).set(j.limit)
            if j.value is not None:
                m.threshold_value.labels(scenario, j.endpoint, j.name).set(j.value)
        m.scenario_runs.labels(scenario, result).inc()
        m.scenario_last_run_timestamp.labels(scenario).set(time.time())
        m.scenario_last_run_passed.labels(scenario).set(1 if verdict.passed else 0)
        bound = m.scenario_last_run_generator_bound.labels(scenario)
        bound.set(1 if result == "generator_bound" else 0)
        judged_skew = {j.endpoint for j in verdict.judgements if j.name == "clock_skew"}
        for j in verdict.judgements:
            if j.state == "no_data":
                # No samples: no value to show, rather than the last window's.
                with contextlib.suppress(KeyError):
                    m.threshold_value.remove(scenario, j.endpoint, j.name)
        for endpoint in ws_endpoints:
            if endpoint not in judged_skew:
                m.threshold_breached.labels(scenario, endpoint, "clock_skew").set(0)

    def live_judged(self, scenario: str, verdict: LiveVerdict | None) -> None:
        """Export a scenario's live judgement; None (not running) sets every breach it had to 0."""
        m = self.metrics
        seen = self._live.setdefault(scenario, set())
        now: set[tuple[str, str]] = set()
        if verdict is not None:
            for lj in verdict.judgements:
                j = lj.judgement
                key: tuple[str, str] = (j.endpoint, j.name)
                now.add(key)
                m.live_threshold_breached.labels(scenario, *key).set(0 if j.passed else 1)
                if j.value is not None:
                    m.live_threshold_value.labels(scenario, *key).set(j.value)
        for key in seen - now:  # no longer judged: nothing is breaching there now
            m.live_threshold_breached.labels(scenario, *key).set(0)
        self._live[scenario] = seen | now

    def run_crashed(self, scenario: str) -> None:
        """A run raised instead of returning a result: it counts as a failed run (``error``)."""
        m = self.metrics
        m.scenario_runs.labels(scenario, "error").inc()
        m.scenario_last_run_timestamp.labels(scenario).set(time.time())
        m.scenario_last_run_passed.labels(scenario).set(0)
        m.scenario_last_run_generator_bound.labels(scenario).set(0)

    def record_failed(self, scenario: str) -> None:
        """A finished run or window could not be judged or recorded."""
        self.metrics.run_records_failed.labels(scenario).inc()

    def trigger_skipped(self, scenario: str) -> None:
        """A trigger fired while a run of ``scenario`` was still in progress."""
        self.metrics.scenario_triggers_skipped.labels(scenario).inc()

    # -- the service and the generator -------------------------------------------

    def loop_lag(self, lag: float) -> None:
        """One event-loop lag sample (``loadsvc.loopmon``)."""
        self.metrics.event_loop_lag.observe(lag)

    def generator_state(self, state: GeneratorState) -> None:
        """The generator's recent lag p99 judged against the trust limit (``loadsvc.lag``)."""
        m = self.metrics
        m.generator_busy.set(1 if state.busy else 0)
        if state.lag_p99_s is not None:
            m.generator_lag_p99.set(state.lag_p99_s)
        if state.limit_s is not None:
            m.generator_lag_limit.set(state.limit_s)
        if state.reads.read_delay_p99_s is not None:
            m.generator_read_delay_p99.set(state.reads.read_delay_p99_s)
        m.generator_frames_sharing_a_read.set(state.reads.shared_frames)

    def next_run(self, scenario: str, when: float | None) -> None:
        """When the scheduler next starts ``scenario`` (a Unix time), or None: not planned."""
        gauge = self.metrics.scenario_next_run_timestamp
        if when is not None:
            gauge.labels(scenario).set(when)
        elif not self.metrics.multiprocess:  # a file-backed value cannot be removed (it warns)
            with contextlib.suppress(KeyError):
                gauge.remove(scenario)

    def regression_judged(
        self,
        scenario: str,
        runs: int,
        findings: dict[tuple[str, str], tuple[float, bool]],
        cleared: set[tuple[str, str]],
    ) -> None:
        """A run was judged against its baseline: per (endpoint, metric) the baseline value
        (base units) and whether it regressed; ``cleared`` are no longer judged (back to 0)."""
        m = self.metrics
        m.baseline_runs.labels(scenario).set(runs)
        for (endpoint, metric), (baseline, regressed) in findings.items():
            m.baseline_value.labels(scenario, endpoint, metric).set(baseline)
            m.regression_detected.labels(scenario, endpoint, metric).set(1 if regressed else 0)
        for endpoint, metric in cleared:
            m.regression_detected.labels(scenario, endpoint, metric).set(0)

    def baseline_compared(self, scenario: str, compared: bool) -> None:
        """The last run of ``scenario`` was compared with a baseline, or could not be."""
        self.metrics.baseline_compared.labels(scenario).set(1 if compared else 0)

    def baseline_record_skipped(self, scenario: str) -> None:
        """A history record of ``scenario`` was left out of its baseline: a field is invalid."""
        self.metrics.baseline_records_skipped.labels(scenario).inc()

    def config_reloaded(self, ok: bool) -> None:
        """A configuration reload was accepted (``ok``) or rejected (needs ``service=True``)."""
        m = self.metrics
        if m.config_reloads is not None:
            m.config_reloads.labels("success" if ok else "failure").inc()
        if m.config_last_reload_successful is not None:
            m.config_last_reload_successful.set(1 if ok else 0)


__all__ = [
    "HTTP_ERROR_OUTCOMES",
    "WS_ERROR_OUTCOMES",
    "Recorder",
    "RunSinks",
    "ScenarioStats",
]
