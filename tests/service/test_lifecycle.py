"""The run lifecycle state machine, event by event, without asyncio or a clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadsvc.service.lifecycle import (
    NOTHING,
    Actions,
    AlreadyRunning,
    IllegalTransition,
    NotRunning,
    Phase,
    RestartBackoff,
    ScenarioLifecycle,
)

BACKOFF = RestartBackoff(initial_s=1.0, max_s=60.0, multiplier=2.0)


def scheduled() -> ScenarioLifecycle:
    """A scheduled (not continuous) scenario, idle."""
    return ScenarioLifecycle("poll", continuous=False, backoff=BACKOFF)


def running_continuous() -> ScenarioLifecycle:
    """A continuous scenario whose first run is going."""
    life = ScenarioLifecycle("stream", continuous=True, backoff=BACKOFF)
    assert life.configure(continuous=True, changed=False) == Actions(start="continuous")
    life.run_started()
    return life


def in_backoff() -> ScenarioLifecycle:
    """A continuous scenario waiting out its restart delay after a clean end."""
    life = running_continuous()
    assert life.run_ended(crashed=False, ran_for_s=5.0) == Actions(wait_s=1.0)
    return life


def test_backoff_grows_and_is_capped() -> None:
    """Restart delays: initial after a clean end, doubling per crash, capped at max."""
    assert [BACKOFF.delay(n) for n in (0, 1, 2, 3, 6, 7, 20)] == [1, 2, 4, 8, 60, 60, 60]


def test_once_run_goes_idle_starting_running_finished_idle() -> None:
    """A trigger starts one run; its end leaves the scenario idle with nothing to do."""
    life = scheduled()
    assert life.fire() == Actions(start="once") and life.phase == "starting"
    life.run_started()
    assert life.phase == "running" and life.active
    assert life.run_ended(crashed=False, ran_for_s=1.0) == NOTHING
    assert life.phase == "idle" and not life.active and life.restarts == 0


def test_crashed_once_run_goes_idle_without_restart() -> None:
    """A scheduled run that crashed is not restarted: the next trigger starts the next one."""
    life = scheduled()
    life.fire()
    life.run_started()
    assert life.run_ended(crashed=True, ran_for_s=1.0) == NOTHING
    assert life.phase == "idle" and life.fire() == Actions(start="once")


def test_trigger_while_a_run_is_going_is_skipped_and_counted() -> None:
    """A trigger that finds the run going (or stopping) is skipped; the phase stays."""
    life = scheduled()
    life.fire()
    life.run_started()
    assert life.fire() == Actions(skipped=True)
    life.stop()
    assert life.fire() == Actions(skipped=True)
    assert life.skipped == 2 and life.phase == "stopping"


def test_trigger_after_removal_or_shutdown_does_nothing() -> None:
    """Removed or shutting down: a late trigger neither starts nor counts."""
    removed, closing = scheduled(), scheduled()
    assert removed.remove() == Actions(forget=True)
    closing.shutdown()
    assert removed.fire() == NOTHING and closing.fire() == NOTHING
    assert removed.skipped == closing.skipped == 0 and removed.phase == closing.phase == "idle"


def test_api_start_of_a_running_scenario_is_refused() -> None:
    """start() while a run is going raises AlreadyRunning naming the scenario."""
    life = scheduled()
    assert life.start() == Actions(start="once")
    life.run_started()
    with pytest.raises(AlreadyRunning, match="poll is already running"):
        life.start()
    with pytest.raises(AlreadyRunning):
        running_continuous().start()


def test_continuous_run_that_ends_waits_then_restarts() -> None:
    """A clean end: backoff for initial_s, counted as a restart, then starting again."""
    life = in_backoff()
    assert life.phase == "backoff" and life.active and life.restarts == 1
    assert life.backoff_over() == Actions(start="continuous") and life.phase == "starting"


def test_consecutive_crashes_grow_the_delay_and_a_long_run_resets_it() -> None:
    """Crashes double the delay; one after a run of max_s counts as the first; a clean end resets."""
    life = running_continuous()
    delays = []
    for ran_for in (0.1, 0.1, 0.1, 60.0, 0.1):
        delays.append(life.run_ended(crashed=True, ran_for_s=ran_for).wait_s)
        assert life.phase == "backoff"
        life.backoff_over()
        life.run_started()
    assert delays == [2.0, 4.0, 8.0, 2.0, 4.0]
    assert life.run_ended(crashed=False, ran_for_s=0.1) == Actions(wait_s=1.0)
    assert life.restarts == 6


def test_run_that_cannot_be_created_counts_as_crashed() -> None:
    """A run ended while still starting is a crash: a continuous scenario backs off."""
    life = ScenarioLifecycle("stream", continuous=True, backoff=BACKOFF)
    life.configure(continuous=True, changed=False)
    assert life.run_ended(crashed=True, ran_for_s=0.0) == Actions(wait_s=2.0)


def test_operator_stop_holds_a_continuous_scenario_until_started() -> None:
    """stop(): the run stops and is not restarted; stop again is NotRunning; start resumes."""
    life = running_continuous()
    assert life.stop() == Actions(stop_run=True) and life.phase == "stopping" and life.held
    assert life.run_ended(crashed=False, ran_for_s=3.0) == NOTHING
    assert life.phase == "idle" and life.restarts == 0
    with pytest.raises(NotRunning, match="stream is not running"):
        life.stop()
    assert life.start() == Actions(start="continuous") and not life.held


def test_stop_during_backoff_cancels_the_restart_and_holds() -> None:
    """stop() while waiting to restart drops the wait: idle and held."""
    life = in_backoff()
    assert life.stop() == Actions(cancel_wait=True)
    assert life.phase == "idle" and life.held and not life.active


def test_start_during_backoff_restarts_at_once() -> None:
    """start() while waiting to restart cancels the wait and starts now."""
    life = in_backoff()
    assert life.start() == Actions(start="continuous", cancel_wait=True)
    assert life.phase == "starting" and life.restarts == 1


def test_changed_continuous_scenario_restarts_at_once_with_no_backoff() -> None:
    """A reload that changes a running continuous scenario stops it and starts it straight away."""
    life = running_continuous()
    life.run_ended(crashed=True, ran_for_s=0.1)
    life.backoff_over()
    life.run_started()
    assert life.configure(continuous=True, changed=True) == Actions(stop_run=True)
    assert life.run_ended(crashed=False, ran_for_s=0.5) == Actions(start="continuous")
    assert life.crashes == 0 and life.restarts == 2


def test_changed_continuous_scenario_in_backoff_starts_now() -> None:
    """A reload during the restart delay cancels it and starts the new spec."""
    assert in_backoff().configure(continuous=True, changed=True) == Actions(
        start="continuous", cancel_wait=True
    )


def test_continuous_turned_scheduled_stops_and_stays_idle() -> None:
    """A reload that makes a continuous scenario scheduled stops its run for good."""
    life = running_continuous()
    assert life.configure(continuous=False, changed=True) == Actions(stop_run=True)
    assert life.run_ended(crashed=False, ran_for_s=1.0) == NOTHING
    assert life.phase == "idle" and life.restarts == 0


def test_scheduled_turned_continuous_starts_when_its_run_ends() -> None:
    """A scheduled run in progress finishes under its spec; then the continuous loop starts."""
    life = scheduled()
    life.fire()
    life.run_started()
    assert life.configure(continuous=True, changed=True) == NOTHING
    assert life.run_ended(crashed=False, ran_for_s=1.0) == Actions(start="continuous")
    assert life.mode == "continuous"


def test_removed_scenario_is_forgotten_once_idle() -> None:
    """remove(): idle is forgotten at once; running stops first; backoff drops its wait."""
    assert scheduled().remove() == Actions(forget=True)
    life = running_continuous()
    assert life.remove() == Actions(stop_run=True)
    assert life.run_ended(crashed=False, ran_for_s=1.0) == Actions(forget=True)
    assert in_backoff().remove() == Actions(cancel_wait=True, forget=True)


def test_removed_then_added_back_while_stopping_is_kept() -> None:
    """A scenario added back before its run ended is not forgotten and restarts."""
    life = running_continuous()
    life.remove()
    assert life.configure(continuous=True, changed=True) == NOTHING
    assert not life.removed
    assert life.run_ended(crashed=False, ran_for_s=1.0) == Actions(start="continuous")


def test_shutdown_stops_everything_and_nothing_starts_after() -> None:
    """shutdown(): the run stops and is not restarted; backoff drops its wait; start refuses."""
    life = running_continuous()
    assert life.shutdown() == Actions(stop_run=True)
    assert life.run_ended(crashed=False, ran_for_s=1.0) == NOTHING
    assert in_backoff().shutdown() == Actions(cancel_wait=True)
    with pytest.raises(AlreadyRunning, match="shutting down"):
        life.start()
    assert life.configure(continuous=True, changed=True) == NOTHING and life.phase == "idle"


def _at(phase: Phase) -> ScenarioLifecycle:
    """A continuous scenario brought to ``phase`` through legal events."""
    life = ScenarioLifecycle("stream", continuous=False, backoff=BACKOFF)
    if phase == "idle":
        return life
    life.configure(continuous=True, changed=False)
    if phase == "starting":
        return life
    life.run_started()
    if phase == "stopping":
        life.configure(continuous=True, changed=True)
    elif phase == "backoff":
        life.run_ended(crashed=False, ran_for_s=1.0)
    assert life.phase == phase
    return life


ILLEGAL: list[tuple[Phase, str, Callable[[ScenarioLifecycle], object]]] = [
    ("idle", "run_started", lambda life: life.run_started()),
    ("idle", "run_ended", lambda life: life.run_ended(crashed=False, ran_for_s=0.0)),
    ("idle", "backoff_over", lambda life: life.backoff_over()),
    ("running", "run_started", lambda life: life.run_started()),
    ("running", "backoff_over", lambda life: life.backoff_over()),
    ("stopping", "run_started", lambda life: life.run_started()),
    ("stopping", "backoff_over", lambda life: life.backoff_over()),
    ("backoff", "run_started", lambda life: life.run_started()),
    ("backoff", "run_ended", lambda life: life.run_ended(crashed=False, ran_for_s=0.0)),
    ("starting", "backoff_over", lambda life: life.backoff_over()),
]


@pytest.mark.parametrize(
    ("phase", "event", "fire"), ILLEGAL, ids=[f"{p}-{e}" for p, e, _ in ILLEGAL]
)
def test_events_a_phase_does_not_allow_raise_and_change_nothing(
    phase: Phase, event: str, fire: Callable[[ScenarioLifecycle], object]
) -> None:
    """An event out of order is IllegalTransition and leaves the phase as it was."""
    life = _at(phase)
    with pytest.raises(IllegalTransition):
        fire(life)
    assert life.phase == phase
