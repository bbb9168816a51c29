"""The supervisor: owns every run of ``loadsvc serve``. Starts, stops, skips and restarts them.

- One run of a scenario at a time. A scheduled trigger that finds the scenario
  running is skipped and counted (``loadsvc_scenario_triggers_skipped_total``);
  the API answers :class:`AlreadyRunning`.
- ``continuous`` scenarios run as one long run (a constant shape loses its
  duration) whose verdict is judged every ``verdict_every_s`` with
  ``roll_window()``, so connections are never churned. Each window is recorded
  like a run. When the run ends (a shape with a plan) it is started again after
  ``backoff.initial_s``; when it crashes, after an exponentially growing delay.
  An operator's stop holds it stopped until it is started again.
- Reload (:meth:`apply`): removed scenarios are stopped; a changed continuous
  scenario is restarted at once with its new spec; a changed scheduled
  scenario's run in progress finishes under the spec it started with.
- Every finished run and window goes to the history and to one log line with
  its verdict and measured values (:mod:`.records`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from loadsvc.config.spec import ConstantShapeSpec, ScenarioSpec
from loadsvc.loopmon import LoopLagMonitor
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, ScenarioRun, Shard
from loadsvc.service.history import RunHistory
from loadsvc.service.records import RunRecords, Trigger
from loadsvc.users.base import Target

log = structlog.get_logger("loadsvc.supervisor")

WHOLE_LOAD = Shard()  # shard 0 of 1


class UnknownScenario(KeyError):
    """No scenario by that name in the configuration."""


class AlreadyRunning(RuntimeError):
    """The scenario has a run in progress."""


class NotRunning(RuntimeError):
    """The scenario has no run in progress."""


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
class ScenarioState:
    """A snapshot of one scenario for ``/api/status``."""

    spec: ScenarioSpec
    running: bool
    stopping: bool
    run_id: str | None
    run_started_at: float | None
    users: int
    held: bool
    restarts: int
    skipped: int
    restart_at: float | None
    last: dict[str, Any] | None
    record_failures: int = 0  # records of this service that could not be made or written


@dataclass
class _Slot:
    spec: ScenarioSpec
    run: ScenarioRun | None = None
    task: asyncio.Task[None] | None = None
    continuous: bool = False  # the task is the continuous loop
    held: bool = False  # stopped by an operator: a continuous scenario stays stopped
    removed: bool = False
    restart_now: bool = False
    restart_at: float | None = None
    restarts: int = 0
    skipped: int = 0
    last: dict[str, Any] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


def continuous_spec(spec: ScenarioSpec) -> ScenarioSpec:
    """The spec a continuous run uses: a constant shape runs until stopped."""
    if isinstance(spec.shape, ConstantShapeSpec):
        return replace(spec, shape=replace(spec.shape, duration_s=None))
    return spec


class Supervisor:
    """Runs scenarios against one target; the only owner of :class:`ScenarioRun` objects."""

    def __init__(
        self,
        target: Target,
        recorder: Recorder,
        history: RunHistory,
        *,
        monitor: LoopLagMonitor | None = None,
        shard: Shard = WHOLE_LOAD,
        tick_s: float = 1.0,
        backoff: RestartBackoff = RestartBackoff(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.recorder = recorder
        self.history = history
        self.monitor = monitor
        self.shard = shard
        self.tick_s = tick_s
        self.backoff = backoff
        self.clock = clock
        self.records = RunRecords(history, recorder, target.base_url, str(shard))
        self._slots: dict[str, _Slot] = {}
        self._closing = False

    # -- configuration ---------------------------------------------------------

    def apply(self, scenarios: Iterable[ScenarioSpec]) -> dict[str, list[str]]:
        """Run exactly these scenarios from now on; returns what was added, removed, changed."""
        new = {s.name: s for s in scenarios}
        added: list[str] = []
        changed: list[str] = []
        removed = [n for n, slot in self._slots.items() if n not in new and not slot.removed]
        for name in removed:
            slot = self._slots[name]
            slot.removed = True
            self._stop_slot(slot)
            self._reconcile(name, slot)
        for name, spec in new.items():
            self.recorder.declare(spec)
            existing = self._slots.get(name)
            if existing is None:
                slot = self._slots[name] = _Slot(spec, last=self.history.last(name))
                added.append(name)
            elif existing.removed or existing.spec != spec:
                slot = existing
                slot.removed = False
                slot.spec = spec
                changed.append(name)
                if slot.continuous and slot.run is not None:
                    slot.restart_now = True  # the loop restarts it with the new spec
                    slot.run.stop()
                slot.wake.set()
            else:
                slot = existing
            self._reconcile(name, slot)
        return {"added": added, "removed": removed, "changed": changed}

    def names(self) -> list[str]:
        """The configured scenarios, in configuration order."""
        return [n for n, slot in self._slots.items() if not slot.removed]

    # -- triggers --------------------------------------------------------------

    def fire(self, name: str) -> None:
        """A scheduled trigger: start a run, or skip and count it when one is in progress."""
        slot = self._slots.get(name)
        if slot is None or slot.removed or self._closing:
            return
        if slot.task is not None:
            slot.skipped += 1
            self.recorder.trigger_skipped(name)
            log.info("trigger skipped: a run is in progress", scenario=name)
            return
        self._start_once(slot, "schedule")

    def start(self, name: str) -> str | None:
        """Start ``name`` now (the API); the run id when known at once.

        A continuous scenario that an operator stopped runs again; one waiting to
        restart after a crash restarts at once. Raises UnknownScenario, AlreadyRunning.
        """
        slot = self._slot(name)
        if self._closing:
            raise AlreadyRunning("the service is shutting down")
        if slot.spec.schedule.kind == "continuous":
            if slot.task is not None and (slot.run is not None or slot.restart_now):
                raise AlreadyRunning(f"{name} is already running")
            slot.held = False
            if slot.task is not None:  # waiting out a restart delay
                slot.restart_now = True
                slot.wake.set()
            self._reconcile(name, slot)
            return None
        if slot.task is not None:
            raise AlreadyRunning(f"{name} is already running")
        return self._start_once(slot, "api").run_id

    def stop(self, name: str) -> str | None:
        """Stop the run of ``name`` (graceful); the run id. Raises UnknownScenario, NotRunning."""
        slot = self._slot(name)
        if slot.task is None:
            raise NotRunning(f"{name} is not running")
        run_id = slot.run.run_id if slot.run is not None else None
        if slot.continuous:
            slot.held = True
        self._stop_slot(slot)
        return run_id

    async def shutdown(self, timeout_s: float) -> None:
        """Stop every run and wait up to ``timeout_s`` for them to end; cancel what is left."""
        self._closing = True
        for slot in self._slots.values():
            self._stop_slot(slot)
        tasks = [slot.task for slot in self._slots.values() if slot.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("runs did not end in time; cancelled", runs=len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    # -- status ----------------------------------------------------------------

    def state(self, name: str) -> ScenarioState:
        """A snapshot of ``name``. Raises UnknownScenario."""
        slot = self._slot(name)
        run = slot.run
        return ScenarioState(
            spec=slot.spec,
            running=slot.task is not None,
            stopping=run is not None and run.stopping,
            run_id=None if run is None else run.run_id,
            run_started_at=(run.started_wall or None) if run is not None else None,
            users=0 if run is None else run.user_count(),
            held=slot.held,
            restarts=slot.restarts,
            skipped=slot.skipped,
            restart_at=slot.restart_at,
            last=slot.last,
            record_failures=self.records.failures,
        )

    # -- internals -------------------------------------------------------------

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None or slot.removed:
            raise UnknownScenario(name)
        return slot

    def _stop_slot(self, slot: _Slot) -> None:
        if slot.run is not None:
            slot.run.stop()
        slot.wake.set()

    def _wants_continuous(self, slot: _Slot) -> bool:
        return (
            not self._closing
            and not slot.removed
            and not slot.held
            and slot.spec.schedule.kind == "continuous"
        )

    def _reconcile(self, name: str, slot: _Slot) -> None:
        """Start the continuous loop when it should run; forget removed slots once idle."""
        if slot.task is not None:
            return
        if slot.removed:
            if self._slots.get(name) is slot:
                del self._slots[name]
            return
        if self._wants_continuous(slot):
            slot.continuous = True
            self._track(name, slot, self._continuous(slot))

    def _track(self, name: str, slot: _Slot, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"scenario-{name}")
        slot.task = task

        def done(t: asyncio.Task[None]) -> None:
            if slot.task is t:
                slot.task = None
                slot.run = None
                slot.continuous = False
                slot.restart_at = None
                slot.restart_now = False
            if not t.cancelled() and t.exception() is not None:
                log.error("scenario task failed", scenario=name, error=repr(t.exception()))
            self._reconcile(name, slot)

        task.add_done_callback(done)

    def _new_run(self, spec: ScenarioSpec) -> ScenarioRun:
        options = RunOptions(shard=self.shard, tick_s=self.tick_s)
        return ScenarioRun(spec, self.target, self.recorder, options, monitor=self.monitor)

    def _start_once(self, slot: _Slot, trigger: Trigger) -> ScenarioRun:
        run = self._new_run(slot.spec)
        slot.run = run
        slot.continuous = False
        self._track(slot.spec.name, slot, self._once(slot, run, trigger))
        return run

    async def _once(self, slot: _Slot, run: ScenarioRun, trigger: Trigger) -> None:
        try:
            result = await run.execute()
        except asyncio.CancelledError:
            slot.last = self.records.cut_short(run, trigger) or slot.last
            raise
        except Exception as exc:
            slot.last = self.records.crashed(run, trigger, exc)
        else:
            slot.last = self.records.finished(run, result, trigger)

    async def _continuous(self, slot: _Slot) -> None:
        crashes = 0
        while self._wants_continuous(slot):
            run = self._new_run(continuous_spec(slot.spec))
            slot.run = run
            slot.restart_at = None
            slot.wake.clear()
            began = self.clock()
            ok = await self._run_windows(slot, run)
            slot.run = None
            if not self._wants_continuous(slot):
                return
            slot.restarts += 1
            if slot.restart_now:
                slot.restart_now = False
                crashes = 0
                continue
            if not ok:
                # A run that held for a while before crashing starts the count afresh.
                crashes = 1 if self.clock() - began >= self.backoff.max_s else crashes + 1
            else:
                crashes = 0
            delay = self.backoff.delay(crashes)
            slot.restart_at = time.time() + delay
            log.warning(
                "continuous run ended; restarting",
                scenario=slot.spec.name,
                in_s=round(delay, 3),
                crashed=not ok,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.wake.wait(), delay)
            slot.restart_now = False

    async def _run_windows(self, slot: _Slot, run: ScenarioRun) -> bool:
        """Drive one continuous run, judging a window every ``verdict_every_s``; False if it crashed."""
        loop = asyncio.get_running_loop()
        execution = loop.create_task(run.execute())
        every = slot.spec.schedule.verdict_every_s
        deadline = loop.time() + every
        window = 1
        try:
            while True:
                done, _ = await asyncio.wait({execution}, timeout=max(0.0, deadline - loop.time()))
                if done:
                    break
                deadline += every
                if run.stats is not None and not run.stopping:
                    await self._record_window(slot, run, window)
                    window += 1
        except asyncio.CancelledError:
            execution.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await execution
            slot.last = self.records.cut_short(run, "continuous", window) or slot.last
            raise
        try:
            result = execution.result()
        except Exception as exc:
            slot.last = self.records.crashed(run, "continuous", exc)
            return False
        slot.last = self.records.finished(run, result, "continuous", window=window)
        return True

    async def _record_window(self, slot: _Slot, run: ScenarioRun, window: int) -> None:
        """Judge and record one verdict window; a failure is counted, never ends the run."""
        try:
            result = await run.roll_window()
        except Exception as exc:
            self.records.failed(run, exc)
            return
        slot.last = self.records.finished(run, result, "continuous", window=window, final=False)
