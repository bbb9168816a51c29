"""The run lifecycle of one scenario as an explicit state machine: pure, no asyncio, no clock.

::

    idle ──start──> starting ──run_started──> running ──stop──> stopping
      ^                 │                        │                  │
      │                 └──────── run_ended ─────┴──────────────────┘
      │                                 v
      │                         finished | crashed
      │        (once, or not wanted)    │     (continuous, wanted)
      └─────────────────────────────────┤──────────> backoff ──backoff_over──> starting
                                        └─(restart now)───────────────────────> starting

Each event returns the :class:`Actions` it implies (start a run, stop it, wait
out a delay, cancel the wait, count a skipped trigger, forget the scenario);
the supervisor performs them. A continuous scenario restarts after its run
ends, after ``backoff.initial_s`` when it ended cleanly and a growing delay
when it crashed; an operator's stop holds it stopped until started again; a
scheduled trigger that finds a run going is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Phase = Literal["idle", "starting", "running", "stopping", "finished", "crashed", "backoff"]
Mode = Literal["once", "continuous"]  # one run, or the restarting loop of a continuous scenario

_NEXT: dict[Phase, frozenset[Phase]] = {
    "idle": frozenset({"starting"}),
    "starting": frozenset({"running", "crashed"}),
    "running": frozenset({"stopping", "finished", "crashed"}),
    "stopping": frozenset({"finished", "crashed"}),
    "finished": frozenset({"idle", "starting", "backoff"}),
    "crashed": frozenset({"idle", "starting", "backoff"}),
    "backoff": frozenset({"idle", "starting"}),
}


class AlreadyRunning(RuntimeError):
    """The scenario has a run in progress."""


class NotRunning(RuntimeError):
    """The scenario has no run in progress."""


class IllegalTransition(RuntimeError):
    """An event that the lifecycle's current phase does not allow: a bug in its driver."""


@dataclass(frozen=True)
class RestartBackoff:
    """Delay before a continuous run starts again: ``initial_s`` after a clean end,
    growing by ``multiplier`` per consecutive crash up to ``max_s``."""

    initial_s: float = 1.0
    max_s: float = 60.0
    multiplier: float = 2.0

    def delay(self, crashes: int) -> float:
        """The delay after ``crashes`` consecutive crashes (0: a clean end)."""
        return min(self.max_s, self.initial_s * self.multiplier ** max(0, crashes))


@dataclass(frozen=True)
class Actions:
    """What the supervisor must do after an event; the default is nothing."""

    start: Mode | None = None  # create a run and its task, then call run_started()
    stop_run: bool = False  # ask the run to stop (graceful)
    wait_s: float | None = None  # call backoff_over() after this many seconds
    cancel_wait: bool = False  # the pending backoff_over() is off
    skipped: bool = False  # a trigger found a run going: count it
    forget: bool = False  # the scenario was removed and is idle now


NOTHING = Actions()
DEFAULT_BACKOFF = RestartBackoff()


class ScenarioLifecycle:
    """Where one scenario's run stands, and what each event makes of it."""

    def __init__(
        self, name: str, continuous: bool, backoff: RestartBackoff = DEFAULT_BACKOFF
    ) -> None:
        self.name = name
        self.phase: Phase = "idle"
        self.mode: Mode | None = None  # what the current run (or backoff) belongs to
        self.continuous = continuous  # the spec's schedule is continuous
        self.backoff = backoff
        self.held = False  # stopped by an operator: a continuous scenario stays stopped
        self.removed = False
        self.closing = False  # the service shuts down: nothing starts any more
        self.restart_now = False  # a continuous run stops to start again at once (reload)
        self.restarts = 0
        self.skipped = 0
        self.crashes = 0  # consecutive crashes of a continuous scenario

    @property
    def active(self) -> bool:
        """A run is in progress or a continuous scenario waits to restart."""
        return self.phase != "idle"

    @property
    def wants_continuous(self) -> bool:
        """The continuous loop should be running."""
        return self.continuous and not (self.held or self.removed or self.closing)

    # -- events ------------------------------------------------------------------

    def configure(self, continuous: bool, changed: bool) -> Actions:
        """The scenario was added (or changed, or added back) by a (re)load of the config."""
        self.removed = False
        self.continuous = continuous
        if changed and self.mode == "continuous":
            if self.phase in ("starting", "running"):
                self.restart_now = True  # stop, and start again with the new spec
                return self._go("stopping", Actions(stop_run=True))
            if self.phase == "stopping":
                self.restart_now = True
            elif self.phase == "backoff":
                return self._after_backoff(Actions(cancel_wait=True))
        return self._reconcile()

    def remove(self) -> Actions:
        """The scenario is gone from the config: stop it, forget it once idle."""
        self.removed = True
        return self._halt()

    def fire(self) -> Actions:
        """A scheduled trigger: start a run, or skip and count it when one is in progress."""
        if self.removed or self.closing:
            return NOTHING
        if self.active:
            self.skipped += 1
            return Actions(skipped=True)
        return self._start("once")

    def start(self) -> Actions:
        """The API starts the scenario. Raises AlreadyRunning.

        A continuous scenario that an operator stopped runs again; one waiting to
        restart restarts at once.
        """
        if self.closing:
            raise AlreadyRunning("the service is shutting down")
        # Only a continuous scenario's pending restart can be started over.
        if self.active and not (self.continuous and self.phase == "backoff"):
            raise AlreadyRunning(f"{self.name} is already running")
        if not self.continuous:
            return self._start("once")
        self.held = False
        if self.phase == "backoff":
            return self._after_backoff(Actions(cancel_wait=True))
        return self._reconcile()

    def stop(self) -> Actions:
        """The API stops the scenario (a continuous one stays held). Raises NotRunning."""
        if not self.active:
            raise NotRunning(f"{self.name} is not running")
        if self.mode == "continuous":
            self.held = True
        return self._halt()

    def shutdown(self) -> Actions:
        """The service shuts down: stop what runs; nothing starts again."""
        self.closing = True
        return self._halt()

    def run_started(self) -> None:
        """The supervisor created the run and its task."""
        self._go("running", NOTHING)

    def run_ended(self, crashed: bool, ran_for_s: float) -> Actions:
        """The run's task ended (``crashed``: it raised) after ``ran_for_s`` seconds."""
        self._go("crashed" if crashed else "finished", NOTHING)
        if self.mode == "once" or not self.wants_continuous:
            return self._idle()
        self.restarts += 1
        if self.restart_now:
            self.restart_now = False
            self.crashes = 0
            return self._start("continuous")
        if crashed:
            # A run that held for a while before crashing starts the count afresh.
            self.crashes = 1 if ran_for_s >= self.backoff.max_s else self.crashes + 1
        else:
            self.crashes = 0
        return self._go("backoff", Actions(wait_s=self.backoff.delay(self.crashes)))

    def backoff_over(self) -> Actions:
        """The restart delay has passed."""
        return self._after_backoff(NOTHING)

    # -- transitions ---------------------------------------------------------------

    def _go(self, phase: Phase, actions: Actions) -> Actions:
        if phase not in _NEXT[self.phase]:
            raise IllegalTransition(f"{self.phase} -> {phase}")
        self.phase = phase
        return actions

    def _start(self, mode: Mode) -> Actions:
        self._go("starting", NOTHING)
        self.mode = mode
        return Actions(start=mode)

    def _idle(self, cancel_wait: bool = False) -> Actions:
        """Idle now; then start the continuous loop if wanted, or forget a removed scenario."""
        self._go("idle", NOTHING)
        self.mode = None
        self.restart_now = False
        follow = self._reconcile()
        return Actions(start=follow.start, cancel_wait=cancel_wait, forget=follow.forget)

    def _reconcile(self) -> Actions:
        if self.phase != "idle":
            return NOTHING
        if self.removed:
            return Actions(forget=True)
        if self.wants_continuous:
            return self._start("continuous")
        return NOTHING

    def _after_backoff(self, actions: Actions) -> Actions:
        if self.phase != "backoff":
            raise IllegalTransition(f"{self.phase}: no restart is pending")
        if not self.wants_continuous:
            return self._idle(cancel_wait=actions.cancel_wait)
        self._go("starting", NOTHING)
        return Actions(start="continuous", cancel_wait=actions.cancel_wait)

    def _halt(self) -> Actions:
        """Stop a run in progress, or drop a pending restart."""
        if self.phase in ("starting", "running"):
            return self._go("stopping", Actions(stop_run=True))
        if self.phase == "backoff":
            return self._idle(cancel_wait=True)
        if self.phase == "idle":
            return self._reconcile()
        return NOTHING  # stopping already
