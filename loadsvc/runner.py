"""The runner: one run of one scenario. The only place that creates user tasks.

Once a tick it asks the load shape how many users there should be, splits
them over the user groups by weight (and takes this shard's share), and starts
or cancels users to match. The users a tick adds start evenly spread over the
first 90 % of that tick, not all at its first instant: a hundred connects and
handshakes at once stall the loop that times every open connection's frames (issue
22 item 3). Each user is made only when its start is due, and no more than a budget
of starts (or of retirements) in one turn of the loop, unless one would be more than
a tick late (:mod:`loadsvc.spawning`).
A run has two deadlines, as k6's executors do: at the end of the plan (or on
``stop()``) users stop *starting* work and idle ones are cancelled;
``graceful_stop_s`` later whatever is still busy is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from loadsvc.config.spec import ScenarioSpec
from loadsvc.feeders import Feeder
from loadsvc.lag import NO_READS
from loadsvc.latency import LatencySamples
from loadsvc.loopmon import LoopLagMonitor, ReadWindow
from loadsvc.recorder import Recorder, ScenarioStats
from loadsvc.shapes import LoadPlan
from loadsvc.shapes import Shard as Shard
from loadsvc.spawning import PER_TURN, Paced, start_offsets
from loadsvc.users import GroupWiring, Target, UserContext, VirtualUser, wire_group
from loadsvc.users.login import Login, Logins
from loadsvc.verdict import Verdict
from loadsvc.window import RolledWindow, WindowVerdict, judge_window
from loadsvc.window import RunResult as RunResult

log = structlog.get_logger("loadsvc.runner")

# A tick's new users start over its first 90 %: the rest is margin, so that they are all
# made by the tick's end although a loaded loop fires their timers a little late.
SLACK = 0.1


@dataclass(frozen=True)
class RunOptions:
    """How to run a scenario beyond what its spec says."""

    users: int | None = None  # override the peak/total users (weights kept)
    duration_s: float | None = None  # cut the run short
    shard: Shard = field(default_factory=Shard)
    tick_s: float = 1.0
    seed: int | None = None
    # Start a tick's new users spread over the tick (False: all at its start, the old
    # burst; for bench/spawn_calm.py's paired comparison).
    spread_starts: bool = True
    # Starts (and retirements) made in one turn of the loop at most (None: no budget, every
    # due one in one turn; for bench/spawn_turns.py's paired comparison).
    per_turn: int | None = PER_TURN


# The one key of a run's paced retirements: one queue of tasks in the order retired (a key
# each made every turn of a stop scan them all, loadsvc.spawning._Queue).
_RETIRING = "retiring"


@dataclass(eq=False)  # a key of the runner's paced starts: by identity
class _Group:
    wiring: GroupWiring
    users: list[tuple[VirtualUser, asyncio.Task[None]]] = field(default_factory=list)
    manned: bool = False  # had a user at some point of the current window

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(ref.endpoint for ref in self.wiring.spec.endpoints())


class ScenarioRun:
    """One run of a scenario against a target."""

    def __init__(
        self,
        spec: ScenarioSpec,
        target: Target,
        recorder: Recorder,
        options: RunOptions = RunOptions(),
        monitor: LoopLagMonitor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if options.users is not None:
            spec = replace(spec, shape=spec.shape.scaled(options.users))
        self.spec = spec
        self.target = target
        self.recorder = recorder
        self.options = options
        self.monitor = monitor
        self.clock = clock
        self.run_id = uuid.uuid4().hex[:12]
        planned = spec.shape.duration()
        if options.duration_s is not None:
            planned = options.duration_s if planned is None else min(planned, options.duration_s)
        self.planned_s = planned
        self.started_at = 0.0  # monotonic, set by execute()
        self.started_wall = 0.0
        self.stats: ScenarioStats | None = None
        self._stop = asyncio.Event()
        self._rng = random.Random(options.seed)
        # Its own random source: per-user data must not shift the users' own draws.
        seed = None if options.seed is None else f"data-{options.seed}"
        self._feeder = Feeder(
            spec.data, spec.name, random.Random(seed), options.shard.index, options.shard.count
        )
        self._groups: list[_Group] = []
        self._logins: Logins | None = None  # the run's logins, with a scenario ``login``
        self._ever_manned: set[str] = set()  # endpoints that had a user at any time of the run
        self._retired: set[asyncio.Task[None]] = set()
        # Made in execute(), on the loop: starts due (a group each), retirements (now).
        self._starts: Paced[_Group] | None = None
        self._retirements: Paced[asyncio.Task[None]] | None = None
        self._ctx: UserContext | None = None
        self._lag: LatencySamples | None = None
        self._reads: ReadWindow | None = None
        self._window_wall = 0.0
        # A window swapped out and being judged in a thread (kept if that is cancelled).
        self._judging: tuple[RolledWindow, float] | None = None
        self.log = log.bind(scenario=spec.name, run_id=self.run_id)

    # -- control -----------------------------------------------------------

    def stop(self) -> None:
        """Ask the run to end now (graceful: the first deadline comes at once)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once the run has been asked to stop."""
        return self._stop.is_set()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return self.clock() - self.started_at if self.started_at else 0.0

    def user_count(self) -> int:
        """Users running now, with those whose start within this tick is still to come."""
        return sum(self._count(g) for g in self._groups)

    def started_count(self) -> int:
        """Users made and started (not those still waiting for their start)."""
        return sum(len(g.users) for g in self._groups)

    def _count(self, group: _Group) -> int:
        waiting = self._starts.pending(group) if self._starts is not None else 0
        return len(group.users) + waiting

    # -- the run -----------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run the scenario to the end of its plan (or ``stop()``) and judge it."""
        spec = self.spec
        self.stats = self.recorder.begin(spec)
        self.started_at = self.clock()
        self.started_wall = self._window_wall = time.time()
        self._lag = self.monitor.open_window() if self.monitor else None
        self._reads = self.monitor.open_reads() if self.monitor else None
        ctx = UserContext(
            scenario=spec.name,
            target=self.target,
            stopping=asyncio.Event(),
            started_at=self.started_at,
            clock=self.clock,
        )
        self._ctx = ctx
        sinks = self.recorder.sinks(self.stats)
        self._groups = [_Group(wire_group(u, sinks)) for u in spec.users]
        # Starts made past their deadline are late (loadsvc.shortfall).
        self._starts = Paced(self._start_user, self.options.per_turn, on_late=self._started_late)
        self._retirements = Paced(_cancel, self.options.per_turn)
        if spec.login is not None:
            # Its own random source, like the data's: a login must not shift the users' draws.
            seed = None if self.options.seed is None else f"login-{self.options.seed}"
            self._logins = Logins(
                spec.login, self.target, sinks.http_sink(spec.login.endpoint_ref()),
                ctx.stopping, random.Random(seed), self.clock, spec.name,
            )  # fmt: skip
        self.recorder.run_started(spec.name)
        self.log.info(
            "run started",
            planned_s=self.planned_s,
            peak_users=spec.shape.peak(),
            shard=str(self.options.shard),
        )
        try:
            await self._drive(ctx)
            await self._wind_down(ctx)
        finally:
            await self._cancel_all()
            if self._logins is not None:
                self._logins.close()
            self.recorder.run_ended(spec.name)
            if self.monitor and self._lag is not None:
                self.monitor.close_window(self._lag)
            if self.monitor and self._reads is not None:
                self.monitor.close_reads(self._reads)
        return await self._finish_window(final=True)

    async def roll_window(self) -> RunResult:
        """Judge the run so far as a verdict window and start the next (continuous runs).

        The window is swapped out at once; its percentiles and verdict are worked
        out in a thread, so a big window does not stall the loop that times frames.
        """
        return await self._finish_window(final=False)

    def roll_window_now(self) -> RunResult:
        """``roll_window`` on the loop, for when awaiting is not possible (a cancelled run).

        A window whose judging was cancelled half-way is judged now, not lost.
        """
        pending = self._judging or self._close_window(final=False)
        self._judging = None
        window, now_wall = pending
        return self._result(judge_window(window), now_wall, final=False)

    async def _finish_window(self, final: bool) -> RunResult:
        self._judging = self._close_window(final)
        window, now_wall = self._judging
        judged = await asyncio.to_thread(judge_window, window)
        self._judging = None
        return self._result(judged, now_wall, final)

    def _close_window(self, final: bool) -> tuple[RolledWindow, float]:
        """Swap the window out (cheap, on the loop); the next one starts empty."""
        assert self.stats is not None
        now_wall = time.time()
        measured = self.stats.roll(self.clock())
        manned = {e for g in self._groups if g.manned or g.users for e in g.endpoints}
        if manned and self.spec.login is not None:
            manned.add(self.spec.login.endpoint)  # every user logs in (or shares a login)
        self._ever_manned |= manned
        idle = frozenset(s.endpoint for s, _ in measured if s.endpoint not in manned)
        if final and self.options.shard.count == 1:
            # Unsharded, an endpoint no user ran all run (its weight got none of the users) was
            # never tested: judged, so its no data fails instead of a pass that leaves it out.
            idle = frozenset(e for e in idle if e in self._ever_manned)
        for g in self._groups:
            g.manned = bool(g.users)
        lag_p99 = None
        if self._lag is not None and self.monitor is not None:
            lag_p99 = self._lag.quantiles((0.99,))[0.99]
            if not final:
                # Each verdict window is judged on its own lag, not the run's history.
                self.monitor.close_window(self._lag)
                self._lag = self.monitor.open_window()
        reads = NO_READS
        if self._reads is not None and self.monitor is not None:
            self.monitor.sample_reads()  # up to now, not the last lag sample
            reads = self._reads.timing()
            if not final:
                self.monitor.close_reads(self._reads)
                self._reads = self.monitor.open_reads()
        starts = self.stats.starts.take(self.elapsed())
        return RolledWindow(self.spec.thresholds, measured, idle, lag_p99, reads, starts), now_wall

    def _started_late(self, late_s: float) -> None:
        """A user started ``late_s`` after it was due, past its deadline (the pacer's on_late)."""
        if self.stats is not None:
            self.stats.starts.started_late(late_s)
        self.recorder.late_start(self.spec.name, late_s)

    def _result(self, judged: WindowVerdict, now_wall: float, final: bool) -> RunResult:
        run = RunResult(
            scenario=self.spec.name,
            run_id=self.run_id,
            started_at=self._window_wall,
            ended_at=now_wall,
            planned_s=self.planned_s,
            verdict=judged.verdict,
            endpoints=judged.endpoints,
            result=judged.result,
            loop_lag_p99_s=judged.loop_lag_p99_s,
            loop_lag_limit_s=judged.loop_lag_limit_s,
            reads=judged.reads,
            starts=judged.starts,
            stopped_early=final and self.stopping,
            shard=str(self.options.shard),
            reasons=judged.reasons,
        )
        self._window_wall = now_wall
        self._publish(judged.verdict, judged.result)
        return run

    def _publish(self, verdict: Verdict, result: str) -> None:
        # Endpoints whose frames carry publish stamps: the ones a clock skew can be judged on.
        stamped = [je.endpoint for je in self.spec.judged_endpoints if je.protocol.connections]
        self.recorder.publish_verdict(self.spec.name, verdict, result, stamped)

    async def _drive(self, ctx: UserContext) -> None:
        plan = LoadPlan.of(self.spec, self.options.shard)
        tick = self.options.tick_s
        end = self.planned_s
        try:
            await self._ticks(plan, tick, end)
        finally:
            if self.stats is not None:  # the shape's end, or a stop: nothing more is asked
                self.stats.starts.ask(self.elapsed(), 0)

    async def _ticks(self, plan: LoadPlan, tick: float, end: float | None) -> None:
        spec = self.spec
        due_at: float | None = None  # when this tick was due (seconds into the run)
        while not self._stop.is_set():
            elapsed = self.elapsed()
            if end is not None and elapsed >= end:
                return
            # A tick more than a tick late (the loop stalled through it): its starts were due
            # from when it was, so they are late (loadsvc.shortfall) and made at once.
            behind = 0.0 if due_at is None or elapsed - due_at <= tick else elapsed - due_at
            shaped = plan.users_at(elapsed)
            if self.stats is not None:
                self.stats.starts.ask(elapsed, sum(shaped))
            wait = tick if end is None else min(tick, end - elapsed)
            spread = max(wait, 0.0) * (1 - SLACK) if self.options.spread_starts else 0.0
            wanted = shaped
            if spread > 0.0:
                # A rising shape: start what it asks for by the tick's end, spread over the
                # tick, so the users follow it (spread from the tick's own count, they came
                # a tick late: 100/s had 1 user in the first second, 500 at 6 s, not 5).
                # A falling one retires to the count it asks for now.
                ahead = plan.users_at(elapsed + wait)
                if sum(ahead) > sum(shaped):
                    wanted = ahead
            for group, n in zip(self._groups, wanted, strict=True):
                self._reconcile(group, n, spread, behind)
            self._count_users_per_endpoint()
            self.recorder.users(spec.name, self.started_count(), sum(shaped))
            due_at = elapsed + max(wait, 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(wait, 0.0))

    def _count_users_per_endpoint(self) -> None:
        """Each endpoint's running users, for the live judgement: one with none (a shard
        without its group's users, a ramp at 0) is idle, not "no data"."""
        if self.stats is None:
            return
        counts: dict[tuple[str, str, str], int] = {}
        for g in self._groups:
            for ref in g.wiring.spec.endpoints():
                key = (ref.kind, ref.endpoint, ref.method)
                counts[key] = counts.get(key, 0) + self._count(g)
        if self.spec.login is not None:
            ref = self.spec.login.endpoint_ref()
            counts[(ref.kind, ref.endpoint, ref.method)] = self.user_count()
        for endpoint_key, ep in self.stats.endpoints.items():
            ep.users = counts.get(endpoint_key, 0)

    def _reconcile(
        self, group: _Group, wanted: int, spread_s: float, behind_s: float = 0.0
    ) -> None:
        """Start or retire ``group``'s users to have ``wanted``; new ones start over ``spread_s``
        (from ``behind_s`` ago: a tick that came late).

        The count is exact at once (a start still to come counts, and is dropped first,
        the latest first, when fewer are wanted); only *when* within the tick each new user
        is made and starts is spread, at most ``per_turn`` of them in one turn unless that
        would make one more than a tick late (loadsvc.spawning). Retirements are paced alike.
        """
        assert self._starts is not None
        # Users whose task ended (a bug in a user, or it returned) are replaced.
        alive = []
        for user, task in group.users:
            if task.done():
                self._report_crash(task)
            else:
                alive.append((user, task))
        group.users = alive
        have = self._count(group)
        if wanted > have:
            now = asyncio.get_running_loop().time() - behind_s
            offsets = itertools.islice(start_offsets(wanted - have, spread_s), wanted - have)
            self._starts.add(group, [now + d for d in offsets], self.options.tick_s)
            group.manned = True
        extra = have - wanted - self._starts.drop(group, have - wanted)
        for _ in range(max(extra, 0)):
            _, task = group.users.pop()  # newest first
            self._retire(task)

    def _start_user(self, group: _Group) -> None:
        """Make one of ``group``'s users and start it: its start is due (paced work)."""
        assert self._ctx is not None
        values = self._feeder.take()
        if values is None:  # every unique row is held: the next tick asks again
            if self._feeder.short == 1:
                self.log.warning("users wait for a free row of unique data")
            return
        mine = replace(self._ctx, values=values)
        own_login = None
        if self._logins is not None:
            login, own = self._logins.for_user(values)
            mine.auth, own_login = login, login if own else None
        user = group.wiring.make(mine, random.Random(self._rng.random()))
        task = asyncio.get_running_loop().create_task(user.run())
        task.add_done_callback(functools.partial(self._give_back, values))
        if own_login is not None:
            task.add_done_callback(functools.partial(_close_login, own_login))
        group.users.append((user, task))
        group.manned = True

    def _give_back(self, values: dict[str, Any], _: asyncio.Task[None]) -> None:
        self._feeder.give_back(values)

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("user crashed; replaced", error=type(exc).__name__)

    def _retire(self, task: asyncio.Task[None]) -> None:
        """Cancel ``task`` in a coming turn (paced, within a tick); it is no longer the
        group's at once."""
        assert self._retirements is not None
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        now = asyncio.get_running_loop().time()
        self._retirements.add(_RETIRING, (now,), self.options.tick_s, task)

    async def _wind_down(self, ctx: UserContext) -> None:
        """First deadline: stop starting work, cancel idle users, let busy ones finish."""
        ctx.stopping.set()
        if self._starts is not None:
            self._starts.clear()  # no start still to come is made now
        now = (asyncio.get_running_loop().time(),)
        for group in self._groups:
            for user, task in group.users:
                if not user.busy and self._retirements is not None:
                    # Cancelled a budget a turn, all within a tick.
                    self._retirements.add(_RETIRING, now, self.options.tick_s, task)
        tasks = [t for g in self._groups for _, t in g.users if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.spec.graceful_stop_s)

    async def _cancel_all(self) -> None:
        """Second deadline: cancel whatever is left and wait for it to close."""
        for paced in (self._starts, self._retirements):
            if paced is not None:
                paced.close()  # nothing more starts or is cancelled: the run is over
        tasks = [t for g in self._groups for _, t in g.users] + list(self._retired)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for g in self._groups:
            g.users.clear()


def _cancel(task: asyncio.Task[None]) -> None:
    """A retired user's cancel, when its turn comes (paced)."""
    task.cancel()


def _close_login(login: Login, _: asyncio.Task[None]) -> None:
    """A user's own login closes with the user."""
    login.close()
