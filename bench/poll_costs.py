"""What a queued socket's wasted wake-up costs against taking it off the poll and back: the break-even.

``python bench/poll_costs.py [--sockets 500,1000,2000] [--turns 200] [--repeats 7]``

:mod:`loadsvc.users.readturns` leaves a queued socket registered with the loop; the
poll is level-triggered, so it is reported ready (and its callback returns at once)
every turn until the queue reads it. The alternative is ``remove_reader`` now and
``add_reader`` after the queue's read. Per loop kind (uvloop, asyncio), over N
TCP connections on 127.0.0.1, in this thread's CPU time:

- wasted wake-up: turns with N readable sockets whose readers do what a queued
  socket's does (count, ask ``ReadTurns.woken``, return), minus turns with the same
  N readers registered and nothing to read, per wake-up. And how many wake-ups a
  ready socket gets in one turn: one on asyncio; on uvloop one while fewer than
  1,024 are ready, but libuv polls again at once while ``epoll_wait`` fills its
  1,024 events (up to 48 times a turn), so past that every ready socket is woken
  many times a turn: a long queue on the poll multiplies its own cost;
- remove + add: a turn that removes the N readers, a turn that adds them back (each
  followed by the loop's poll, where libuv makes its ``epoll_ctl`` calls), minus two
  idle turns, per socket.

The break-even is their ratio: a socket woken more often than that while queued costs
less off the poll (``readturns.BREAK_EVEN``). Medians of the repeats. One process,
both ends of each connection in it; bounded by a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench import procs
from bench.table import Table
from loadsvc.users import readturns
from loadsvc.users.readturns import ReadTurns

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


class Queued:
    """A queued socket's readiness callback: what StampedTransport._read_ready does when
    ``_left`` (count the wake-up, ask whether to leave the poll: never, here)."""

    def __init__(self, turns: ReadTurns) -> None:
        self._turns = turns
        self._wakes = 0
        self._polled = True

    def _read_ready(self) -> None:
        self._wakes += 1
        if self._polled and self._turns.woken(self._wakes):
            self._polled = False


def _tcp_pairs(n: int) -> list[tuple[socket.socket, socket.socket]]:
    """``n`` connected TCP pairs on 127.0.0.1 (what a stamped transport polls), non-blocking."""
    pairs = []
    with socket.create_server(("127.0.0.1", 0), backlog=128) as server:
        for _ in range(n):
            a = socket.create_connection(server.getsockname())
            b, _ = server.accept()
            a.setblocking(False)
            b.setblocking(False)
            pairs.append((a, b))
    return pairs


async def _turns_cpu(n: int, each: Callable[[], None] | None = None) -> float:
    """CPU (thread time) of ``n`` turns of the running loop, ``each`` called at each."""
    clock = time.thread_time
    c0 = clock()
    for _ in range(n):
        if each is not None:
            each()
        await asyncio.sleep(0)  # one turn: the loop polls before this task runs again
    return clock() - c0


async def measure_loop(args: argparse.Namespace, sockets: int) -> dict[str, float]:
    """The two costs on the running loop over ``sockets`` connections, in microseconds,
    and the wake-ups per ready socket a turn; medians over the repeats."""
    loop = asyncio.get_running_loop()
    turns = ReadTurns.of(loop)
    pairs = _tcp_pairs(sockets)
    readers = [(a.fileno(), Queued(turns)) for a, _ in pairs]
    wakes, moves, per_turn = [], [], []
    step = [0]

    def remove_or_add() -> None:  # every reader removed in one turn, added in the next
        if step[0] % 2 == 0:
            for fd, _ in readers:
                loop.remove_reader(fd)
        else:
            for fd, q in readers:
                loop.add_reader(fd, q._read_ready)
        step[0] += 1

    try:
        for fd, q in readers:
            loop.add_reader(fd, q._read_ready)
        await _turns_cpu(20)  # registrations made (libuv's happen at the next poll)
        for _ in range(args.repeats):
            idle = await _turns_cpu(args.turns)
            for _, b in pairs:  # readable, never read: reported every turn
                b.send(b"x")
            w0 = turns.wakes
            await _turns_cpu(1)  # the first report
            ready = await _turns_cpu(args.turns)
            woken = turns.wakes - w0
            for a, _ in pairs:  # drained: idle again
                a.recv(16)
            await _turns_cpu(2)
            assert woken >= sockets * args.turns, f"only {woken} wake-ups"
            wakes.append((ready - idle) / woken * 1e6)
            per_turn.append(woken / (sockets * args.turns))

            rounds = max(2, args.turns // 10) * 2  # even: every reader back at the end
            idle = await _turns_cpu(rounds)
            moved = await _turns_cpu(rounds, remove_or_add)
            await _turns_cpu(2)
            moves.append((moved - idle) / (sockets * rounds / 2) * 1e6)
    finally:
        for fd, _ in readers:
            loop.remove_reader(fd)
        for a, b in pairs:
            a.close()
            b.close()
    wake, move = statistics.median(wakes), statistics.median(moves)
    return {
        "wake_us": wake,
        "move_us": move,
        "break_even": move / wake if wake > 0 else 0.0,
        "wakes_per_turn": statistics.median(per_turn),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Both loop kinds at each socket count, in one process, one after the other; the
    collector off. A row per (loop, sockets)."""
    readturns.set_unpoll_after(None)  # the readers only count
    gc.disable()
    try:
        out = []
        for sockets in args.sockets:
            for kind, factory in LOOPS.items():
                with asyncio.Runner(loop_factory=factory) as runner:
                    row = runner.run(measure_loop(args, sockets))
                out.append({"loop": kind, "sockets": sockets, **row})
        return out
    finally:
        gc.enable()
        readturns.set_unpoll_after()


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    """One row per loop kind and socket count."""
    rows = [
        [
            r["loop"],
            str(r["sockets"]),
            f"{r['wakes_per_turn']:.1f}",
            f"{r['wake_us']:.3f}",
            f"{r['move_us']:.3f}",
            f"{r['break_even']:.1f}",
            str(readturns.BREAK_EVEN[r["loop"]]),
        ]
        for r in results
    ]
    return Table(
        "A queued socket's wasted wake-up vs off the poll and back "
        f"(medians of {args.repeats}, us of CPU)",
        [
            "loop",
            "ready sockets",
            "wake-ups each a turn",
            "wasted wake-up",
            "remove + add",
            "break-even (wake-ups)",
            "BREAK_EVEN",
        ],
        rows,
    )


def main() -> None:
    """Measure both loops, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--sockets", type=lambda v: [int(n) for n in v.split(",")], default=[500, 1000, 2000]
    )
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(procs.NOFILE, hard), hard))
    table(run(args), args).print_both()


if __name__ == "__main__":
    main()
