"""Operational alerts: is loadsvc itself up, running its scenarios on time, and measuring?"""

from __future__ import annotations

from loadsvc.config.spec import ConstantShapeSpec, ScenarioSpec
from loadsvc.metrics import NAMES
from loadsvc.render.header import describe_schedule
from loadsvc.render.profile import TimingProfile, prom_duration
from loadsvc.render.promql import NOT_DATA, SCENARIO_ENDPOINT, matchers, number
from loadsvc.render.thresholds import Rule, alert

JOB = "loadsvc"
# Names of the two "loadsvc is not there" alerts; Alertmanager lets LoadsvcDown mute the rest.
DOWN = "LoadsvcDown"


def service_rules(profile: TimingProfile) -> list[Rule]:
    """Alerts about the loadsvc processes: down, missing, overloaded."""
    up = f'up{{job="{JOB}"}}'
    return [
        alert(
            DOWN,
            # No replica answers its scrape, or none is discovered at all.
            f"max by (job) ({up}) == 0\nor\nabsent({up})",
            profile.down_for_s,
            "critical",
            "loadsvc is down or not scraped",
            "No loadsvc replica has been scraped successfully for "
            f"{prom_duration(profile.down_for_s)}: no load is generated and no other "
            "loadsvc alert can be trusted (they are inhibited while this one fires).",
        ),
        alert(
            "LoadsvcReplicaDown",
            f"{up} == 0",
            profile.down_for_s,
            "warning",
            "loadsvc replica {{ $labels.instance }} is down",
            "The scrape of {{ $labels.instance }} has failed for "
            f"{prom_duration(profile.down_for_s)}; its shard of every scenario is not running, "
            "so the fleet generates less load than configured.",
        ),
        alert(
            "LoadsvcGeneratorBusy",
            # The gauge is loadsvc.lag.is_busy over the last 10 s, the verdict's definition;
            # its limit is exported beside it, so the description shows both numbers.
            f"max by (instance) ({NAMES.generator_busy}) == 1",
            profile.busy_for_s,
            "warning",
            "loadsvc replica {{ $labels.instance }} is too busy to measure truthfully",
            "The event-loop lag p99 of {{ $labels.instance }} (over 10 s: "
            + _per_instance(NAMES.generator_lag_p99)
            + ") has been above its trust limit ("
            + _per_instance(NAMES.generator_lag_limit)
            + f") for {prom_duration(profile.busy_for_s)}: its latencies may include that "
            "much of its own queueing. A breach within the lag ends its run as "
            "generator_bound (breached; the generator was also busy, so the excess is not "
            "certain); a breach beyond the lag still fails, and no threshold alert is muted "
            "by this one.",
        ),
    ]


def _per_instance(metric: str) -> str:
    """An alert template printing ``metric`` of the alert's instance as a duration."""
    return (
        f"{{{{ with printf `max({metric}{{instance=%q}})` $labels.instance | query }}}}"
        "{{ . | first | value | humanizeDuration }}{{ else }}unknown{{ end }}"
    )


def measurement_rules(profile: TimingProfile) -> list[Rule]:
    """Alerts on what loadsvc sees rather than on a threshold: stalls and failed verdicts."""
    w = prom_duration(profile.stall_window_s)
    return [
        alert(
            "LoadsvcWsMessagesStopped",
            f"sum by ({SCENARIO_ENDPOINT}) ({NAMES.ws_connections}) > 0\n"
            f"unless on ({SCENARIO_ENDPOINT})\n"
            f"sum by ({SCENARIO_ENDPOINT}) "
            f"(rate({NAMES.ws_messages}{{{NOT_DATA}}}[{w}])) > 0",
            profile.stall_for_s,
            "critical",
            "No WS messages on {{ $labels.endpoint }} ({{ $labels.scenario }}) "
            "while connections are open",
            "{{ $value }} connections to {{ $labels.endpoint }} in scenario "
            f"{{{{ $labels.scenario }}}} are open, but no data message arrived in the last {w}: "
            "the backend stopped publishing or stopped delivering.",
        ),
        alert(
            "LoadsvcScenarioRunFailed",
            f"min by (scenario) ({NAMES.scenario_last_run_passed}) == 0\n"
            "and on (scenario)\n"
            f"max by (scenario) ({NAMES.scenario_last_run_timestamp}) > 0",
            0,
            "warning",
            "The last run of {{ $labels.scenario }} did not pass its thresholds",
            "The last run of scenario {{ $labels.scenario }} did not pass. "
            "Breached: {{ range printf "
            f"`max by (endpoint, threshold) ({NAMES.threshold_breached}{{scenario=%q}}) == 1` "
            "$labels.scenario | query }}{{ .Labels.endpoint }} {{ .Labels.threshold }}; "
            "{{ else }}none recorded; {{ end }}"
            "{{ range printf "
            f"`max by (scenario) ({NAMES.scenario_last_run_generator_bound}{{scenario=%q}}) == 1` "
            "$labels.scenario | query }}the breaches were within the generator's lag "
            "(generator_bound): breached, and the generator was also busy, so the excess is not "
            "certain; {{ end }}the alert resolves when a run passes.",
        ),
    ]


def run_duration_s(scenario: ScenarioSpec) -> float:
    """How long one run of ``scenario`` lasts by its shape (0 when open-ended)."""
    shape = scenario.shape
    if isinstance(shape, ConstantShapeSpec):
        return shape.duration_s or 0.0
    return sum(stage.duration_s for stage in shape.stages)


def schedule_rules(scenarios: tuple[ScenarioSpec, ...], profile: TimingProfile) -> list[Rule]:
    """Per scenario: a continuous one must be running, a scheduled one must start on time."""
    rules: list[Rule] = []
    margin = number(profile.missed_run_margin_s)
    for s in scenarios:
        sel = matchers({"scenario": s.name})
        if s.schedule.kind == "continuous":
            rules.append(
                alert(
                    "LoadsvcContinuousScenarioNotRunning",
                    f"max by (scenario) ({NAMES.scenario_running}{sel}) < 1\n"
                    f"or\nabsent({NAMES.scenario_running}{sel})",
                    profile.not_running_for_s,
                    "critical",
                    "Continuous scenario {{ $labels.scenario }} is not running",
                    "Scenario {{ $labels.scenario }} should run continuously but no replica has "
                    f"been running it for {prom_duration(profile.not_running_for_s)}.",
                    {"scenario": s.name},
                )
            )
        elif s.schedule.kind in ("interval", "cron"):
            # Overdue seconds: since the planned start, or since the last run ended
            # beyond one interval plus one run. `> 0` ignores "never/none" zeros.
            overdue = [f"time() - min by (scenario) ({NAMES.scenario_next_run_timestamp}{sel} > 0)"]
            if s.schedule.kind == "interval" and s.schedule.every_s:
                allowed = number(s.schedule.every_s + run_duration_s(s))
                overdue.append(
                    "time() - max by (scenario) "
                    f"({NAMES.scenario_last_run_timestamp}{sel} > 0) - {allowed}"
                )
            when = describe_schedule(s.schedule)
            rules.append(
                alert(
                    "LoadsvcScheduledRunMissed",
                    "\nor\n".join(f"(\n  {o}\n) > {margin}" for o in overdue),
                    0,
                    "warning",
                    "A scheduled run of {{ $labels.scenario }} was missed",
                    f"Scenario {{{{ $labels.scenario }}}} ({when}) is "
                    "{{ $value | humanizeDuration }} overdue: its planned start has passed "
                    "without a run, or no run has finished for longer than its interval.",
                    {"scenario": s.name},
                )
            )
    return rules
