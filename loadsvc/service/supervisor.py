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

Every decision about a scenario's lifecycle (start, skip, stop, hold, restart,
back off, forget) is made by its :class:`~.lifecycle.ScenarioLifecycle`; the
supervisor feeds it events and performs the actions it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import structlog

from loadsvc.config.spec import ConstantShapeSpec, ScenarioSpec
from loadsvc.loopmon import LoopLagMonitor
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, ScenarioRun, Shard
from loadsvc.service.history import RunHistory
from loadsvc.service.lifecycle import DEFAULT_BACKOFF, Actions, Mode, ScenarioLifecycle
from loadsvc.service.lifecycle import AlreadyRunning as AlreadyRunning
from loadsvc.service.lifecycle import NotRunning as NotRunning
from loadsvc.service.lifecycle import RestartBackoff as RestartBackoff
from loadsvc.service.records import RunRecords, Trigger
from loadsvc.users.base import Target

log = structlog.get_logger("loadsvc.supervisor")

WHOLE_LOAD = Shard()  # shard 0 of 1


class UnknownScenario(KeyError):
    """No scenario by that name in the configuration."""


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
    life: ScenarioLifecycle
    run: ScenarioRun | None = None
    task: asyncio.Task[bool] | None = None  # the run's task: True when the run crashed
    began: float = 0.0  # monotonic start of the run
    restart_wait: asyncio.TimerHandle | None = None
    restart_at: float | None = None  # wall clock
    last: dict[str, Any] | None = None


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
        backoff: RestartBackoff = DEFAULT_BACKOFF,
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
        removed = [n for n, slot in self._slots.items() if n not in new and not slot.life.removed]
        for name in removed:
            slot = self._slots[name]
            self._act(name, slot, slot.life.remove())
        for name, spec in new.items():
            self.recorder.declare(spec)
            continuous = spec.schedule.kind == "continuous"
            existing = self._slots.get(name)
            if existing is None:
                life = ScenarioLifecycle(name, continuous, self.backoff)
                if self._closing:
                    life.shutdown()  # nothing starts once the service shuts down
                slot = self._slots[name] = _Slot(spec, life, last=self.history.last(name))
                added.append(name)
                is_change = False
            else:
                slot = existing
                is_change = slot.life.removed or slot.spec != spec
                if is_change:
                    slot.spec = spec
                    changed.append(name)
            self._act(name, slot, slot.life.configure(continuous, is_change))
        return {"added": added, "removed": removed, "changed": changed}

    def names(self) -> list[str]:
        """The configured scenarios, in configuration order."""
        return [n for n, slot in self._slots.items() if not slot.life.removed]

    # -- triggers --------------------------------------------------------------

    def fire(self, name: str) -> None:
        """A scheduled trigger: start a run, or skip and count it when one is in progress."""
        slot = self._slots.get(name)
        if slot is not None:
            self._act(name, slot, slot.life.fire(), "schedule")

    def start(self, name: str) -> str | None:
        """Start ``name`` now (the API); the run id when known at once.

        A continuous scenario that an operator stopped runs again; one waiting to
        restart after a crash restarts at once. Raises UnknownScenario, AlreadyRunning.
        """
        slot = self._slot(name)
        run = self._act(name, slot, slot.life.start(), "api")
        return run.run_id if run is not None and slot.life.mode == "once" else None

    def stop(self, name: str) -> str | None:
        """Stop the run of ``name`` (graceful); the run id. Raises UnknownScenario, NotRunning."""
        slot = self._slot(name)
        run_id = slot.run.run_id if slot.run is not None else None
        self._act(name, slot, slot.life.stop())
        return run_id

    def accept_baseline(self, name: str) -> dict[str, Any]:
        """Accept the runs since ``name``'s regression began as its new baseline (the API).

        Raises UnknownScenario, CannotAccept."""
        slot = self._slot(name)
        return self.records.regressions.accept(name, slot.spec.baseline)

    async def shutdown(self, timeout_s: float) -> None:
        """Stop every run and wait up to ``timeout_s`` for them to end; cancel what is left."""
        self._closing = True
        for name, slot in list(self._slots.items()):
            self._act(name, slot, slot.life.shutdown())
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
        life = slot.life
        return ScenarioState(
            spec=slot.spec,
            running=life.active,
            stopping=run is not None and run.stopping,
            run_id=None if run is None else run.run_id,
            run_started_at=(run.started_wall or None) if run is not None else None,
            users=0 if run is None else run.user_count(),
            held=life.held,
            restarts=life.restarts,
            skipped=life.skipped,
            restart_at=slot.restart_at,
            last=slot.last,
            record_failures=self.records.failures,
        )

    # -- performing the lifecycle's actions --------------------------------------

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None or slot.life.removed:
            raise UnknownScenario(name)
        return slot

    def _act(
        self, name: str, slot: _Slot, actions: Actions, trigger: Trigger = "continuous"
    ) -> ScenarioRun | None:
        """Do what the lifecycle asked; the run started, if one was."""
        if actions.skipped:
            self.recorder.trigger_skipped(name)
            log.info("trigger skipped: a run is in progress", scenario=name)
        if actions.cancel_wait and slot.restart_wait is not None:
            slot.restart_wait.cancel()
        if actions.cancel_wait or actions.start:
            slot.restart_wait = slot.restart_at = None
        if actions.stop_run and slot.run is not None:
            slot.run.stop()
        if actions.wait_s is not None:
            loop = asyncio.get_running_loop()
            slot.restart_wait = loop.call_later(actions.wait_s, self._backoff_over, name, slot)
            slot.restart_at = time.time() + actions.wait_s
        if actions.forget and self._slots.get(name) is slot:
            del self._slots[name]
        if actions.start is not None:
            return self._launch(name, slot, actions.start, trigger)
        return None

    def _launch(self, name: str, slot: _Slot, mode: Mode, trigger: Trigger) -> ScenarioRun | None:
        """Create the run and its task; a run that cannot even be created counts as crashed."""
        try:
            spec = continuous_spec(slot.spec) if mode == "continuous" else slot.spec
            run = self._new_run(spec)
        except Exception as exc:
            log.error("cannot create the run", scenario=name, error=repr(exc))
            self._act(name, slot, slot.life.run_ended(crashed=True, ran_for_s=0.0))
            return None
        body: Coroutine[Any, Any, bool] = (
            self._run_windows(slot, run) if mode == "continuous" else self._once(slot, run, trigger)
        )
        slot.run = run
        slot.began = self.clock()
        slot.task = asyncio.get_running_loop().create_task(body, name=f"scenario-{name}")
        slot.task.add_done_callback(partial(self._ended, name, slot))
        slot.life.run_started()
        return run

    def _ended(self, name: str, slot: _Slot, task: asyncio.Task[bool]) -> None:
        if slot.task is not task:
            return
        slot.task = slot.run = None
        crashed = False  # a cancelled run was cut short by shutdown, not crashed
        if not task.cancelled():
            if (exc := task.exception()) is not None:
                log.error("scenario task failed", scenario=name, error=repr(exc))
            crashed = exc is not None or task.result()
        actions = slot.life.run_ended(crashed, self.clock() - slot.began)
        if actions.wait_s is not None:
            log.warning(
                "continuous run ended; restarting",
                scenario=name,
                in_s=round(actions.wait_s, 3),
                crashed=crashed,
            )
        self._act(name, slot, actions)

    def _backoff_over(self, name: str, slot: _Slot) -> None:
        slot.restart_wait = None
        self._act(name, slot, slot.life.backoff_over())

    # -- runs ------------------------------------------------------------------

    def _new_run(self, spec: ScenarioSpec) -> ScenarioRun:
        options = RunOptions(shard=self.shard, tick_s=self.tick_s)
        return ScenarioRun(spec, self.target, self.recorder, options, monitor=self.monitor)

    async def _once(self, slot: _Slot, run: ScenarioRun, trigger: Trigger) -> bool:
        """Drive one run to its end and record it; True if it crashed."""
        try:
            result = await run.execute()
        except asyncio.CancelledError:
            slot.last = self.records.cut_short(run, trigger) or slot.last
            raise
        except Exception as exc:
            slot.last = self.records.crashed(run, trigger, exc)
            return True
        slot.last = self.records.finished(run, result, trigger)
        return False

    async def _run_windows(self, slot: _Slot, run: ScenarioRun) -> bool:
        """Drive one continuous run, judging a window every ``verdict_every_s``; True if it crashed."""
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
            return True
        slot.last = self.records.finished(run, result, "continuous", window=window)
        return False

    async def _record_window(self, slot: _Slot, run: ScenarioRun, window: int) -> None:
        """Judge and record one verdict window; a failure is counted, never ends the run."""
        try:
            result = await run.roll_window()
        except Exception as exc:
            self.records.failed(run, exc)
            return
        slot.last = self.records.finished(run, result, "continuous", window=window, final=False)
