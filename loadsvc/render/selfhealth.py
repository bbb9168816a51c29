"""Alerts on loadsvc's own health over weeks: memory, descriptors or tasks that keep rising.

The signal is the *floor* of each series (its minimum over a window), compared with the floor
some hours earlier. A garbage-collected heap saw-tooths between the same floor and peak, and
a load shape ramps up and down, so neither moves the floor for long; a leak does. The rule
needs the earlier floor window to lie after the process's warm-up (when caches, pools and
connections fill, which is not growth), and the rise to last `for:` more.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadsvc.render.operational import JOB
from loadsvc.render.profile import prom_duration
from loadsvc.render.promql import number
from loadsvc.render.thresholds import Rule, alert

NAME = "LoadsvcSelfResourceGrowing"
FLOOR_WINDOW_S = 30 * 60.0
SPAN_S = 3 * 3600.0  # the floor now against the floor this long ago
FOR_S = 3600.0  # ... and still so an hour later: a sustained slope, not a step
WARM_UP_S = 30 * 60.0  # caches, pools and connections filling after a start are not growth


@dataclass(frozen=True)
class Resource:
    """One watched series, and how much its floor may rise over the span."""

    label: str  # the alert's `resource` label
    metric: str
    ratio: float  # floor now / floor then above this ...
    minimum_rise: float  # ... and by at least this much (small counts are noisy)
    what: str
    ends_in: str  # what the leak leads to, for the description


RESOURCES = (
    Resource(
        "memory",
        "process_resident_memory_bytes",
        1.10,
        32 * 2**20,
        "resident memory",
        "an OOM kill and a restart",
    ),
    Resource(
        "file_descriptors",
        "process_open_fds",
        1.20,
        50,
        "open file descriptors",
        "refused connections once the descriptor limit is reached",
    ),
    Resource(
        "asyncio_tasks",
        "loadsvc_asyncio_tasks",
        1.20,
        100,
        "asyncio tasks",
        "a slower event loop, then a busy generator whose latencies are uncertain, and more memory",
    ),
)


def _expr(r: Resource) -> str:
    sel = f'{r.metric}{{job="{JOB}"}}'
    w, span = prom_duration(FLOOR_WINDOW_S), prom_duration(SPAN_S)
    now, then = f"min_over_time({sel}[{w}])", f"min_over_time({sel}[{w}] offset {span})"
    # The earlier floor window must lie after the warm-up.
    old_enough = number(WARM_UP_S + FLOOR_WINDOW_S + SPAN_S)
    return (
        f"{now} > {r.ratio:g} * {then}\n"
        f"and\n{now} - {then} > {r.minimum_rise:.0f}\n"
        f'and on (instance)\ntime() - process_start_time_seconds{{job="{JOB}"}} > {old_enough}'
    )


def self_health_rules() -> list[Rule]:
    """One rule per watched resource, all named `LoadsvcSelfResourceGrowing`."""
    span, w = prom_duration(SPAN_S), prom_duration(FLOOR_WINDOW_S)
    return [
        alert(
            NAME,
            _expr(r),
            FOR_S,
            "warning",
            f"loadsvc replica {{{{ $labels.instance }}}}: {r.what} growing for hours",
            f"The floor ({w} minimum) of {r.what} of {{{{ $labels.instance }}}} is more than "
            f"{(r.ratio - 1) * 100:.0f}% above its floor {span} earlier, and has been for "
            f"{prom_duration(FOR_S)} (now {{{{ $value | humanize }}}}): a leak in loadsvc, which ends in "
            f"{r.ends_in}.",
            {"resource": r.label},
        )
        for r in RESOURCES
    ]
