"""Whether a window had the load its shape asked for: users the generator started late.

Each tick the runner starts what the shape asks for, spread over the tick, and makes each
user within a tick of its start (:mod:`loadsvc.spawning`) unless the generator cannot: a
loop stalled, or a ramp asking for users faster than the process can make them (a turn's
catch-up is capped, so past that rate starts fall ever further behind). A user started late
ran that much less than the shape asked: the backend saw less load. A breach under less
load is still the backend's. A pass is not proven for the load that was asked: a window
whose late starts add up to more than ``SHORT_SHARE`` of the user-seconds its shape asked
for does not pass; it is ``generator_bound`` (:func:`loadsvc.window.judge_window`), and
says how many users were late and by how much.

>>> tally = LateTally()
>>> tally.add(2.0); tally.add(1.5)
>>> short = tally.take(asked_user_s=100.0)
>>> (short.late, short.late_user_s, short.worst_s, short.short)
(2, 3.5, 2.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NONE_LATE", "SHORT_SHARE", "LateTally", "LoadShortfall", "StartsLedger"]

# The share of a window's asked user-seconds its late starts may miss before a pass is
# no longer one: a 1.5 s stall of a ramp's starts in a 30 s window of 800 users is ~3 %.
SHORT_SHARE = 0.01


@dataclass(frozen=True)
class LoadShortfall:
    """A window's starts made more than a tick late, against what its shape asked for."""

    late: int = 0  # users started more than a tick after they were due
    late_user_s: float = 0.0  # the user-seconds they missed (how late each one was)
    worst_s: float = 0.0  # the latest of them
    asked_user_s: float = 0.0  # the user-seconds the shape asked for over the window

    @property
    def share(self) -> float:
        """The share of the asked user-seconds the late starts missed."""
        return self.late_user_s / self.asked_user_s if self.asked_user_s > 0 else 0.0

    @property
    def short(self) -> bool:
        """The late starts missed more than ``SHORT_SHARE`` of the load asked for."""
        return self.late > 0 and self.share > SHORT_SHARE

    def reason(self, breached: bool = False) -> str:
        """In words, for the window's reasons and the run's last line; ``breached``: beside a
        breach, which stays the backend's (a pass under less load is what is not certain)."""
        worst = f"up to {self.worst_s:.1f} s; " if self.worst_s > 0 else ""
        why = (
            "a breach under less load is still the backend's"
            if breached
            else "so a pass is not certain"
        )
        return (
            f"the generator started {self.late} users more than a tick late ({worst}"
            f"{self.share * 100:.1f} % of the user-seconds the shape asked for): the load was "
            f"short of the shape's, {why}"
        )

    def line(self) -> str:
        """The summary's line ("" when no start was late)."""
        if not self.late:
            return ""
        if self.short:
            return "! " + self.reason()
        return (
            f"  {self.late} users started more than a tick late (up to {self.worst_s:.1f} s; "
            f"{self.share * 100:.2f} % of the user-seconds the shape asked for, within "
            f"{SHORT_SHARE * 100:g} %)"
        )


NONE_LATE = LoadShortfall()


class LateTally:
    """Late starts as they happen (the start pacer's ``on_late``), taken once per window."""

    __slots__ = ("late", "user_s", "worst_s")

    def __init__(self) -> None:
        self.late = 0
        self.user_s = 0.0
        self.worst_s = 0.0

    def add(self, late_s: float) -> None:
        """A user started ``late_s`` seconds after it was due (past its deadline)."""
        self.late += 1
        self.user_s += late_s
        self.worst_s = max(self.worst_s, late_s)

    def take(self, asked_user_s: float) -> LoadShortfall:
        """This window's late starts against ``asked_user_s``; the next window starts at none."""
        out = LoadShortfall(self.late, self.user_s, self.worst_s, asked_user_s)
        self.late, self.user_s, self.worst_s = 0, 0.0, 0.0
        return out


class StartsLedger:
    """One run's starts against its shape: the user-seconds asked for (the runner says how
    many users the shape asks for at each tick) and the users started late, per verdict
    window (:meth:`take`) and over the run (what the live judgement diffs).

    >>> ledger = StartsLedger()
    >>> ledger.ask(0.0, 10); ledger.started_late(1.5); ledger.ask(4.0, 0)
    >>> ledger.take(5.0)
    LoadShortfall(late=1, late_user_s=1.5, worst_s=1.5, asked_user_s=40.0)
    """

    __slots__ = ("_asked_at", "_asking", "_tally", "_window_asked", "asked_user_s",
                 "late_user_s", "late_users")  # fmt: skip

    def __init__(self) -> None:
        self._tally = LateTally()
        self._window_asked = 0.0
        self._asked_at = 0.0  # seconds into the run
        self._asking = 0  # users the shape asks for since then
        self.asked_user_s = 0.0  # over the run
        self.late_users = 0
        self.late_user_s = 0.0

    def ask(self, now: float, users: int) -> None:
        """The shape asks for ``users`` from ``now`` (seconds into the run) on."""
        asked = self._asking * max(0.0, now - self._asked_at)
        self._window_asked += asked
        self.asked_user_s += asked
        self._asked_at, self._asking = now, users

    def started_late(self, late_s: float) -> None:
        """A user started ``late_s`` after it was due, past its deadline (a tick)."""
        self._tally.add(late_s)
        self.late_users += 1
        self.late_user_s += late_s

    def take(self, now: float) -> LoadShortfall:
        """The window that ends ``now``; the next one starts at none."""
        self.ask(now, self._asking)
        out = self._tally.take(self._window_asked)
        self._window_asked = 0.0
        return out
