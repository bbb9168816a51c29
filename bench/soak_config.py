"""The soak's configuration: the shipped seed configuration with windows that fit a soak.

Sizes stay the seed's (500 WS streams, 500 REST pollers, the 800-user market-open burst, the
100-client reconnect storm) unless ``scale`` shrinks them for a toy run. Only time changes:
verdicts every ``verdict_every`` instead of 5 minutes, the 9:00 burst and the 15-minute storm
on short intervals, so that a 30-minute soak sees each several times.

The accelerated soak (``cycle_s``: the gap between restarts) squeezes time further: the
burst and the storm on periods of 4 and 2 cycles (so every cycle ends at the same phase
of both, every second cycle alike), verdict windows of seconds, and a run history small
enough to be compacted over and over.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from loadsvc.config import parse_config
from loadsvc.config.durations import parse_duration

BURST_EVERY = "7m"  # the 3-minute market-open burst, instead of 9:00 on weekdays
STORM_EVERY = "5m"  # the 2-minute reconnect storm, instead of every 15 minutes


def _scaled(n: int, scale: float) -> int:
    return max(1, round(n * scale))


def _scale_shape(shape: dict[str, Any], scale: float) -> None:
    if "users" in shape:
        shape["users"] = _scaled(int(shape["users"]), scale)
    if "spawn_rate" in shape:
        shape["spawn_rate"] = _scaled(int(shape["spawn_rate"]), scale)
    for stage in shape.get("stages", []):
        stage["target"] = 0 if stage["target"] == 0 else _scaled(int(stage["target"]), scale)


# The accelerated soak's run history: a few dozen verdict records, so compaction comes round.
ACCELERATED_HISTORY_BYTES = 32 * 1024
BURST_CYCLES = 4  # the accelerated burst's period, in restart cycles


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _accelerate(config: dict[str, Any], cycle_s: float) -> None:
    """Burst and storm on periods of 4 and 2 cycles, each well inside its period."""
    scenarios = config["scenarios"]
    burst = scenarios["market_open_burst"]
    burst["schedule"] = {"kind": "interval", "every": _seconds(BURST_CYCLES * cycle_s)}
    up, held, down = burst["shape"]["stages"]
    up["duration"], held["duration"], down["duration"] = (
        _seconds(cycle_s / 2),
        _seconds(cycle_s * 1.5),
        _seconds(cycle_s / 2),
    )
    storm = scenarios["reconnect_storm"]
    storm["schedule"] = {"kind": "interval", "every": _seconds(2 * cycle_s)}
    storm["shape"]["duration"] = _seconds(cycle_s)
    storm["users"][0]["cycle"] = _seconds(cycle_s / 2)
    config["service"] = {"history_max_bytes": ACCELERATED_HISTORY_BYTES}


def schedule_period_s(cycle_s: float | None = None) -> float:
    """The longest period of the soak's scheduled load (the burst's, the storm's)."""
    if cycle_s is not None:
        return BURST_CYCLES * cycle_s  # the storm's period is 2 cycles
    return max(parse_duration(BURST_EVERY), parse_duration(STORM_EVERY))


def soak_config(
    scale: float = 1.0, verdict_every: str = "1m", cycle_s: float | None = None
) -> dict[str, Any]:
    """The seed configuration as data, with the soak's schedules and ``scale`` of its users
    (accelerated to restarts every ``cycle_s`` when given)."""
    text = resources.files("loadsvc.config").joinpath("default.yaml").read_text("utf-8")
    config: dict[str, Any] = yaml.safe_load(text)
    for name, scenario in config["scenarios"].items():
        schedule = scenario["schedule"]
        if schedule["kind"] == "continuous":
            schedule["verdict_every"] = verdict_every
        elif name == "market_open_burst":
            scenario["schedule"] = {"kind": "interval", "every": BURST_EVERY}
        elif name == "reconnect_storm":
            schedule["every"] = STORM_EVERY
        if scale != 1.0:
            _scale_shape(scenario["shape"], scale)
    if cycle_s is not None:
        _accelerate(config, cycle_s)
    return config


def soak_config_text(
    scale: float = 1.0, verdict_every: str = "1m", cycle_s: float | None = None
) -> str:
    """:func:`soak_config` as a YAML file's text."""
    head = "# Written by bench/soak.py: the seed configuration with the soak's schedules.\n"
    text = head + yaml.safe_dump(soak_config(scale, verdict_every, cycle_s), sort_keys=False)
    parse_config(text, "soak.yaml")  # a mistake here fails now, not after the target started
    return text
