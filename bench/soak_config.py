"""The soak's configuration: the shipped seed configuration with windows that fit a soak.

Sizes stay the seed's (500 WS streams, 500 REST pollers, the 800-user market-open burst, the
100-client reconnect storm) unless ``scale`` shrinks them for a toy run, and so do the burst's
and the storm's durations. Only time changes: verdicts every ``verdict_every`` instead of 5
minutes, and the 9:00 burst and the 15-minute storm on short intervals, so that a 30-minute
soak sees each several times.

With restarts, those intervals are whole numbers of restart cycles (:func:`in_step`): the
storm every few cycles, the burst every few storm periods, so the scheduled load repeats
every ``period_cycles`` cycles and a reading at a cycle's end has its twin, at the same
phase of both, a period later. (loadsvc fires an interval schedule at multiples of it since
the Unix epoch, so the phase itself is wherever the run started; it is the same for twins.)
The memory judgement compares windows of whole periods after restart N and 2N.

The accelerated soak (``squeeze``) squeezes time further: the burst and the storm on periods
of 4 and 2 cycles with their durations shortened to fit (every second cycle alike), verdict
windows of seconds, and a run history small enough to be compacted over and over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from loadsvc.config import parse_config
from loadsvc.config.durations import parse_duration

BURST_EVERY = "7m"  # the 3-minute market-open burst, instead of 9:00 on weekdays
STORM_EVERY = "5m"  # the 2-minute reconnect storm, instead of every 15 minutes
BURST, STORM = "market_open_burst", "reconnect_storm"
# Time between the end of a scheduled run and its next start: a run still going when its
# schedule fires is skipped, which would double that period and break the step.
CLEARANCE_S = 30.0
# The accelerated soak's run history: a few dozen verdict records, so compaction comes round.
ACCELERATED_HISTORY_BYTES = 32 * 1024
BURST_CYCLES = 4  # the accelerated burst's period, in restart cycles
STORM_CYCLES = 2  # the accelerated storm's


@dataclass(frozen=True)
class InStep:
    """The scheduled load in step with the restarts: the storm every ``storm_cycles`` restart
    cycles of ``cycle_s``, the burst every ``burst_cycles`` (a multiple of the storm's), so
    the whole load repeats every ``period_cycles``."""

    cycle_s: float
    storm_cycles: int
    burst_cycles: int

    @property
    def period_cycles(self) -> int:
        """Cycles after which the burst and the storm are both at the same phase again."""
        return self.burst_cycles

    @property
    def period_s(self) -> float:
        """The same in seconds."""
        return self.period_cycles * self.cycle_s


def _scaled(n: int, scale: float) -> int:
    return max(1, round(n * scale))


def _scale_shape(shape: dict[str, Any], scale: float) -> None:
    if "users" in shape:
        shape["users"] = _scaled(int(shape["users"]), scale)
    if "spawn_rate" in shape:
        shape["spawn_rate"] = _scaled(int(shape["spawn_rate"]), scale)
    for stage in shape.get("stages", []):
        stage["target"] = 0 if stage["target"] == 0 else _scaled(int(stage["target"]), scale)


def seed() -> dict[str, Any]:
    """The shipped seed configuration as data."""
    text = resources.files("loadsvc.config").joinpath("default.yaml").read_text("utf-8")
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def run_length_s(shape: dict[str, Any]) -> float:
    """How long one run of a scheduled scenario lasts: its stages, or its duration."""
    if "stages" in shape:
        return sum(parse_duration(stage["duration"]) for stage in shape["stages"])
    return parse_duration(shape["duration"])


def _cycles(cycle_s: float, every_s: float, length_s: float) -> int:
    """Whole cycles nearest ``every_s``, but long enough to hold a run and its clearance."""
    return max(1, round(every_s / cycle_s), math.ceil((length_s + CLEARANCE_S) / cycle_s))


def in_step(cycle_s: float) -> InStep:
    """The seed's storm and burst on periods of whole restart cycles, each as near its soak
    interval (``STORM_EVERY``, ``BURST_EVERY``) as a whole number allows while its run (the
    seed's duration) still ends ``CLEARANCE_S`` before the next starts; the burst's period a
    multiple of the storm's. 30 minutes with 10 restarts: cycles of 148.5 s, both every 2."""
    scenarios = seed()["scenarios"]
    storm = _cycles(cycle_s, parse_duration(STORM_EVERY), run_length_s(scenarios[STORM]["shape"]))
    per_storm = _cycles(
        storm * cycle_s, parse_duration(BURST_EVERY), run_length_s(scenarios[BURST]["shape"])
    )
    return InStep(cycle_s, storm, storm * per_storm)


VERDICT_EVERY_S = 60.0  # the continuous scenarios' verdict window, about


def verdict_every(step: InStep | None) -> str:
    """The continuous scenarios' verdict window: a minute, or with restarts the whole fraction
    of a cycle nearest it (74.3 s at 30 minutes and 10 restarts), so every cycle ends at the
    same point of a window: a window closing is a spike of glibc's memory in use at full size
    (docs/reliability.md), which belongs to the same phase of every cycle."""
    if step is None:
        return _seconds(VERDICT_EVERY_S)
    return _seconds(step.cycle_s / max(1, round(step.cycle_s / VERDICT_EVERY_S)))


def accelerated(cycle_s: float) -> InStep:
    """The accelerated soak's periods: 2 and 4 cycles (durations squeezed to fit)."""
    return InStep(cycle_s, STORM_CYCLES, BURST_CYCLES)


def _seconds(value: float) -> str:
    return f"{value:.3f}s".replace(".000s", "s")


def _squeeze(config: dict[str, Any], cycle_s: float) -> None:
    """The burst and the storm each well inside its period of 4 and 2 cycles."""
    scenarios = config["scenarios"]
    up, held, down = scenarios[BURST]["shape"]["stages"]
    up["duration"], held["duration"], down["duration"] = (
        _seconds(cycle_s / 2),
        _seconds(cycle_s * 1.5),
        _seconds(cycle_s / 2),
    )
    storm = scenarios[STORM]
    storm["shape"]["duration"] = _seconds(cycle_s)
    storm["users"][0]["cycle"] = _seconds(cycle_s / 2)
    config["service"] = {"history_max_bytes": ACCELERATED_HISTORY_BYTES}


def schedule_period_s(step: InStep | None = None) -> float:
    """The longest period of the soak's scheduled load (the burst's, the storm's)."""
    if step is not None:
        return step.period_s
    return max(parse_duration(BURST_EVERY), parse_duration(STORM_EVERY))


def soak_config(
    scale: float = 1.0,
    verdict_every: str = "1m",
    step: InStep | None = None,
    squeeze: bool = False,
) -> dict[str, Any]:
    """The seed configuration as data, with the soak's schedules (in ``step`` with the
    restarts when given) and ``scale`` of its users; ``squeeze``: the accelerated soak's."""
    config = seed()
    every = {BURST: BURST_EVERY, STORM: STORM_EVERY}
    if step is not None:
        every = {
            BURST: _seconds(step.burst_cycles * step.cycle_s),
            STORM: _seconds(step.storm_cycles * step.cycle_s),
        }
    for name, scenario in config["scenarios"].items():
        schedule = scenario["schedule"]
        if schedule["kind"] == "continuous":
            schedule["verdict_every"] = verdict_every
        elif name in every:
            scenario["schedule"] = {"kind": "interval", "every": every[name]}
        if scale != 1.0:
            _scale_shape(scenario["shape"], scale)
    if squeeze and step is not None:
        _squeeze(config, step.cycle_s)
    return config


def soak_config_text(
    scale: float = 1.0,
    verdict_every: str = "1m",
    step: InStep | None = None,
    squeeze: bool = False,
) -> str:
    """:func:`soak_config` as a YAML file's text."""
    head = "# Written by bench/soak.py: the seed configuration with the soak's schedules.\n"
    config = soak_config(scale, verdict_every, step, squeeze)
    text = head + yaml.safe_dump(config, sort_keys=False)
    parse_config(text, "soak.yaml")  # a mistake here fails now, not after the target started
    return text
