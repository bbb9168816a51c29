"""The alert-rule file: operational groups plus the per-endpoint threshold group."""

from __future__ import annotations

from loadsvc.config.spec import Config
from loadsvc.render.operational import measurement_rules, schedule_rules, service_rules
from loadsvc.render.profile import TimingProfile, prom_duration
from loadsvc.render.regression import regression_rules
from loadsvc.render.selfhealth import self_health_rules
from loadsvc.render.stream import stream_rules
from loadsvc.render.thresholds import threshold_rules

Group = dict[str, object]


def alert_rules(config: Config, profile: TimingProfile) -> dict[str, list[Group]]:
    """The whole alert-rule file as data (groups without rules are left out)."""
    groups: list[Group] = [
        {"name": "loadsvc-service", "rules": service_rules(profile)},
        {"name": "loadsvc-measurement", "rules": measurement_rules(profile)},
        {"name": "loadsvc-schedule", "rules": schedule_rules(config.scenarios, profile)},
        {
            "name": "loadsvc-thresholds",
            "rules": threshold_rules(config.scenarios, profile)
            + stream_rules(config.scenarios, profile),
        },
        {"name": "loadsvc-regressions", "rules": regression_rules(config.scenarios, profile)},
        {"name": "loadsvc-self-health", "rules": self_health_rules()},
    ]
    return {"groups": [g for g in groups if g["rules"]]}


def header_notes(profile: TimingProfile) -> list[str]:
    """Why the windows and ``for:`` durations are what they are (the file's comment)."""
    d = prom_duration
    burns = ", ".join(
        f"{b.factor:g}x over {d(b.long_s)} and {d(b.short_s)}" for b in profile.burn_windows
    )
    return [
        "",
        "Alert rules of loadsvc. Labels: severity (warning|critical), scenario, endpoint;",
        "annotations: summary, description (measured value and threshold), runbook_url",
        "(a section of docs/runbook.md per alert). Every expression aggregates over replicas.",
        "",
        "Windows and for: chosen for a soak that runs day and night:",
        f"- Latency and error ratio are judged over {d(profile.rate_window_s)}, the verdict "
        "window of a continuous scenario,",
        f"  and must hold for {d(profile.for_s)} more: a breach has to last about two "
        "verdict windows before",
        "  anyone is notified, so a single GC pause or deploy of the target does not page.",
        "- Latency alerts are exact at the threshold: with the limit a bucket bound, 'pXX > limit'",
        "  is 'the share of observations with le=<limit> is below XX%'. critical = still true",
        f"  over {d(profile.sustained_window_s)} (a regression that persists, not a blip).",
        f"- Error budget (critical): multi-window burn rate, {burns};",
        "  the long window proves the budget is burning, the short one that it still is, so",
        "  it fires within minutes of a hard failure and resolves soon after it stops.",
        "- A run shorter than the rate window (the 3-minute market-open burst) may end before",
        "  these fire; LoadsvcScenarioRunFailed reports its verdict instead.",
        f"- Operational: down after {d(profile.down_for_s)} (one failed scrape is not an "
        "outage), continuous",
        f"  scenario stopped for {d(profile.not_running_for_s)} (longer than a restart "
        "with backoff), scheduled run",
        f"  {d(profile.missed_run_margin_s)} overdue (more than a scheduler misfire), no WS "
        f"message for {d(profile.stall_window_s)}",
        f"  (hundreds of throttled 500 ms messages expected) held {d(profile.stall_for_s)}.",
    ]
