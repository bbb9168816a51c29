"""Reading ``baseline``: how runs are judged against their own past, in ``defaults`` and per scenario.

A scenario's policy is the built-in one, with the fields ``defaults.baseline``
sets replaced, then the fields its own ``baseline`` sets; each tolerance margin
on its own. None of it makes runs incomparable: changing a tolerance keeps the
baseline (see :func:`loadsvc.baseline.fingerprint`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import yaml

from loadsvc.config._nodes import Fields, Reader
from loadsvc.config._values import boolean, choice, duration, integer, number, percent
from loadsvc.config.spec import BaselinePolicy, Tolerance

__all__ = [
    "CONTINUOUS",
    "BaselineOverrides",
    "check_defaults",
    "read_baseline",
    "resolve_baseline",
]

_KEYS = (
    "enabled",
    "runs",
    "min_runs",
    "continuous",
    "time_of_day_slack",
    "significance",
    "tolerance",
)
_MARGIN_KEYS = ("relative", "absolute")
CONTINUOUS = ("last_windows", "same_time_of_day")
_MAX_RUNS = 1000
_MAX_RISE = 100.0  # +10,000 %: a relative margin of an "up" metric


def _ms(node: yaml.Node) -> float:
    return duration(allow_zero=True)(node) * 1000.0


# Each tolerance: the relative margin's converter and the absolute margin's (in the unit
# the summary JSON uses: ms, a ratio, messages per second per connection).
_TOLERANCES = {
    "latency": (percent(_MAX_RISE), _ms),
    "error_ratio": (percent(_MAX_RISE), percent(1.0)),
    "message_rate": (percent(1.0), number(0.0)),
    "reconnect": (percent(_MAX_RISE), _ms),
    "missed": (percent(_MAX_RISE), percent(1.0)),
}


@dataclass(frozen=True)
class MarginOverrides:
    """The margins of one tolerance that a level sets."""

    relative: float | None = None
    absolute: float | None = None

    def apply(self, base: Tolerance) -> Tolerance:
        """``base`` with the margins set here replaced."""
        return Tolerance(
            base.relative if self.relative is None else self.relative,
            base.absolute if self.absolute is None else self.absolute,
        )


@dataclass(frozen=True)
class BaselineOverrides:
    """The ``baseline`` fields that one level (defaults or a scenario) sets."""

    enabled: bool | None = None
    runs: int | None = None
    min_runs: int | None = None
    continuous: str | None = None
    time_of_day_slack_s: float | None = None
    alpha: float | None = None
    tolerances: tuple[tuple[str, MarginOverrides], ...] = ()
    node: yaml.Node | None = None  # where it was read, for errors found once merged
    path: str = ""

    def apply(self, base: BaselinePolicy) -> BaselinePolicy:
        """``base`` with the fields set here replaced (``continuous`` as ``same_time_of_day``)."""
        changed: dict[str, object] = {
            name: value
            for name, value in (
                ("enabled", self.enabled),
                ("runs", self.runs),
                ("min_runs", self.min_runs),
                ("time_of_day_slack_s", self.time_of_day_slack_s),
                ("alpha", self.alpha),
            )
            if value is not None
        }
        if self.continuous is not None:
            changed["same_time_of_day"] = self.continuous == "same_time_of_day"
        for name, margins in self.tolerances:
            changed[name] = margins.apply(getattr(base, name))
        return replace(base, **changed)  # type: ignore[arg-type]


def read_baseline(reader: Reader, node: yaml.Node | None, path: str) -> BaselineOverrides:
    """Read a ``baseline`` mapping (absent or null: empty); problems are reported, not raised."""
    if node is None:
        return BaselineOverrides()
    found = reader.mapping(node, path, _KEYS, null_is_empty=True)
    if found is None:
        return BaselineOverrides()
    significance = number(0.0, 0.5, low_open=True)
    return BaselineOverrides(
        enabled=found.get("enabled", boolean()),
        runs=found.get("runs", integer(1, _MAX_RUNS)),
        min_runs=found.get("min_runs", integer(1, _MAX_RUNS)),
        continuous=found.get("continuous", choice(CONTINUOUS)),
        time_of_day_slack_s=found.get("time_of_day_slack", duration()),
        alpha=found.get("significance", significance),
        tolerances=_read_tolerances(found),
        node=node,
        path=path,
    )


def _read_tolerances(parent: Fields) -> tuple[tuple[str, MarginOverrides], ...]:
    table = parent.section("tolerance", tuple(_TOLERANCES))
    if table is None:
        return ()
    out: list[tuple[str, MarginOverrides]] = []
    for name, (relative, absolute) in _TOLERANCES.items():
        margins = table.section(name, _MARGIN_KEYS)
        if margins is not None:
            out.append(
                (
                    name,
                    MarginOverrides(
                        margins.get("relative", relative), margins.get("absolute", absolute)
                    ),
                )
            )
    return tuple(out)


def check_defaults(reader: Reader, defaults: BaselineOverrides) -> None:
    """Report ``defaults.baseline`` setting more runs needed than kept (once, not per scenario)."""
    _check_runs(reader, defaults.apply(BaselinePolicy()), defaults)


def _check_runs(reader: Reader, policy: BaselinePolicy, where: BaselineOverrides) -> None:
    if policy.min_runs > policy.runs:
        reader.error(
            f"{where.path}.min_runs",
            where.node,
            f"min_runs ({policy.min_runs}) must not exceed runs ({policy.runs}): "
            "a baseline could never form",
        )


def resolve_baseline(
    reader: Reader,
    defaults: BaselineOverrides,
    own: BaselineOverrides,
    schedule: str,
) -> BaselinePolicy:
    """A scenario's policy: the built-in one, ``defaults`` over it, then ``own``.

    ``continuous: same_time_of_day`` from the defaults applies to continuous scenarios
    only (``schedule`` is the scenario's schedule kind); set on a scenario that is not
    continuous, it is an error.
    """
    continuous = schedule == "continuous"
    if own.continuous is not None and not continuous:
        reader.error(
            f"{own.path}.continuous",
            own.node,
            f"applies to continuous scenarios only; this one's schedule is {schedule!r}",
        )
    policy = own.apply(defaults.apply(BaselinePolicy()))
    if not continuous:
        policy = replace(policy, same_time_of_day=False)
    if own.runs is not None or own.min_runs is not None:
        _check_runs(reader, policy, own)
    return policy
