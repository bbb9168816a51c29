"""The signal loop shared by ``serve`` and the ``--workers`` front, with real signals to this process."""

from __future__ import annotations

import asyncio
import os
import signal

from loadsvc.service.signals import serve_until_signalled
from tests.support.timing import scaled


class Recorded:
    """A served thing that records what the loop asked of it, in order."""

    def __init__(self, during_start: tuple[signal.Signals, ...] = (), fail: bool = False) -> None:
        self.calls: list[str] = []
        self.during_start = during_start
        self.fail = fail

    async def start(self) -> None:
        self.calls.append("start")
        if self.fail:
            raise OSError("address already in use")
        if self.during_start:
            await deliver(*self.during_start)
        self.calls.append("started")

    def request_reload(self) -> None:
        self.calls.append("reload")

    async def stop(self) -> int:
        self.calls.append("stop")
        return 7


async def deliver(*signums: signal.Signals) -> None:
    """Send ``signums`` to this process and return once the loop has run their handlers.

    The loop handles signals in the order they arrive, so a SIGUSR1 sent last and
    seen by its own handler proves the ones before it were handled.
    """
    loop = asyncio.get_running_loop()
    seen = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, seen.set)
    try:
        for signum in (*signums, signal.SIGUSR1):
            os.kill(os.getpid(), signum)
        await asyncio.wait_for(seen.wait(), scaled(5))
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


async def test_sigterm_stops_and_returns_the_stop_code() -> None:
    """SIGTERM once serving: stop() runs and its exit code is the loop's."""
    served = Recorded()
    loop_task = asyncio.create_task(serve_until_signalled(served, host="127.0.0.1", port=0))
    await deliver()  # the loop is running and its handlers are installed
    await deliver(signal.SIGTERM)
    assert await asyncio.wait_for(loop_task, scaled(5)) == 7
    assert served.calls == ["start", "started", "stop"]


async def test_sigterm_and_sighup_while_starting_wait_for_the_start() -> None:
    """Signals during start: no default kill; the reload waits until started, then stop runs."""
    served = Recorded(during_start=(signal.SIGHUP, signal.SIGTERM))
    code = await asyncio.wait_for(
        serve_until_signalled(served, host="127.0.0.1", port=0), scaled(5)
    )
    assert code == 7
    assert served.calls == ["start", "started", "reload", "stop"]


async def test_sighup_reloads_and_sigint_stops() -> None:
    """SIGHUP asks for a reload and keeps serving; SIGINT then stops."""
    served = Recorded()
    loop_task = asyncio.create_task(serve_until_signalled(served, host="127.0.0.1", port=0))
    await deliver()  # the loop is running and its handlers are installed
    await deliver(signal.SIGHUP)
    assert served.calls == ["start", "started", "reload"] and not loop_task.done()
    await deliver(signal.SIGINT)
    assert await asyncio.wait_for(loop_task, scaled(5)) == 7


async def test_a_port_that_cannot_be_opened_exits_1_without_stopping() -> None:
    """OSError from start: exit 1 and stop() is never called."""
    served = Recorded(fail=True)
    assert await serve_until_signalled(served, host="127.0.0.1", port=1) == 1
    assert served.calls == ["start"]


async def test_a_watch_that_says_stop_stops() -> None:
    """The watch task (a worker's parent check) setting the event stops the service."""
    served = Recorded()

    async def front_gone(done: asyncio.Event) -> None:
        done.set()

    code = await asyncio.wait_for(
        serve_until_signalled(served, host="127.0.0.1", port=0, watch=front_gone), scaled(5)
    )
    assert code == 7 and served.calls == ["start", "started", "stop"]
