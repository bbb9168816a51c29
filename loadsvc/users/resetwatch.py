"""Resets the loop does not report: found on idle stamped sockets, once a second.

:class:`loadsvc.users.arrival.StampedTransport` reads through ``loop.add_reader``.
On uvloop that is a libuv poll handle, and libuv stops polling a socket whose poll
reports an error (``POLLERR``: the peer's reset) and tells the handle ``EBADF``;
uvloop then closes the handle without running the reader. When the reset comes
with the data before it still unread (a backend killed mid-broadcast, a proxy that
aborts), the reader reads the data and is never called again: the connection looks
open, receives nothing, and is only found dead when a keepalive ping fails to be
written (20 s and more later) — a reset counted late, as a silence, and a
reconnect that waits for it. asyncio's own loop reports the same reset to the
reader, and needs none of this.

So on such a loop every stamped transport is watched: once a second the ones that
have read nothing for ``IDLE_S`` are asked for the socket's pending error
(``SO_ERROR``: one system call, no read); a reset found there closes the
transport with it, as a read would have (``ConnectionResetError``). A socket that
reads is never asked, so a streaming connection costs nothing; an idle one costs a
``getsockopt`` a second.

A pass over thousands of watched transports in one turn of the loop (~0.5 ms at
5,000) would late-time every frame waiting behind it, so a pass is worked off in
slices of ``SLICE_S``, as :mod:`loadsvc.users.endings` works off endings, the loop
polling the network between them. Passes start ``EVERY_S`` apart (from one start to
the next, however many turns a pass took), so an idle socket is still asked once a
period.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
import weakref
from typing import ClassVar, Protocol

__all__ = ["EVERY_S", "IDLE_S", "SLICE_S", "ResetWatch", "drops_resets"]

EVERY_S = 1.0  # how often the idle sockets are asked
IDLE_S = 1.0  # nothing read for this long: idle
# A pass's work per loop turn: endings.SLICE_S's budget, for the same reason (loadsvc.lag).
SLICE_S = 0.001


class Watched(Protocol):
    """A transport the watch can ask and close: a StampedTransport."""

    arrived: float  # wall clock of the latest read (0 before the first)

    def pending_error(self) -> int:
        """The socket's pending error (``SO_ERROR``), 0 if none."""

    def reset_found(self, exc: OSError) -> None:
        """Close as a read that raised ``exc`` would have."""


def drops_resets(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop``'s add_reader can miss a reset (uvloop's: see the module)."""
    return type(loop).__module__.partition(".")[0] == "uvloop"


class ResetWatch:
    """The watch of one loop's stamped transports (see the module)."""

    _per_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ResetWatch]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_ref = weakref.ref(loop)  # the loop is this object's key in _per_loop
        self._watched: set[Watched] = set()
        self._timer: asyncio.Handle | None = None  # the next pass or slice; None: idle
        self._pass: list[Watched] = []  # the transports of the pass under way, in order
        self._next = 0  # the index in _pass of the next one to look at
        self._pass_started = 0.0  # the loop's time the pass under way started
        self.asked = 0  # pending errors asked for
        self.found = 0  # resets found so
        self.slices = 0  # turns that ran part of a pass (for tests and benchmarks)
        self.passes = 0  # passes finished

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> ResetWatch | None:
        """The watch of ``loop``, or None where the loop reports resets itself."""
        watch = cls._per_loop.get(loop)
        if watch is None:
            if not drops_resets(loop):
                return None
            watch = cls._per_loop[loop] = cls(loop)
        return watch

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop_ref()
        assert loop is not None  # used by its transports and its timer, which hold it
        return loop

    def add(self, transport: Watched) -> None:
        """Watch ``transport`` until :meth:`discard`."""
        self._watched.add(transport)
        if self._timer is None:
            self._timer = self._loop.call_later(EVERY_S, self._check)

    def discard(self, transport: Watched) -> None:
        """Stop watching ``transport`` (it closed)."""
        self._watched.discard(transport)

    def _check(self) -> None:
        """Start a pass: every transport watched now, looked at over the coming slices."""
        self._pass = list(self._watched)  # a copy: the set changes while the pass runs
        self._next = 0
        self._pass_started = self._loop.time()
        self._slice()

    def _slice(self) -> None:
        """Ask the idle transports of the pass, in order, until ``SLICE_S`` is spent."""
        # _timer still holds this slice's handle while it runs: an add() meanwhile (a close's
        # callbacks) must not start a second chain of passes.
        self.slices += 1
        idle_before = time.time() - IDLE_S
        deadline = time.perf_counter() + SLICE_S
        todo, watched = self._pass, self._watched
        while self._next < len(todo):
            transport = todo[self._next]
            self._next += 1
            # Closed since the pass started (discarded): not asked.
            if transport.arrived < idle_before and transport in watched:
                self._ask(transport)
            if time.perf_counter() >= deadline:
                break
        if self._next < len(todo):
            self._timer = self._loop.call_soon(self._slice)  # after the loop has polled
            return
        self._pass = []
        self.passes += 1
        self._timer = None
        if self._watched:
            self._timer = self._loop.call_at(self._pass_started + EVERY_S, self._check)

    def _ask(self, transport: Watched) -> None:
        """Ask ``transport``'s pending error; a reset found closes it."""
        self.asked += 1
        error = transport.pending_error()
        if error:
            self.found += 1
            self._watched.discard(transport)
            name = errno.errorcode.get(error, "")
            kind = ConnectionResetError if error == errno.ECONNRESET else OSError
            transport.reset_found(kind(error, f"{os.strerror(error)} ({name}, found idle)"))


def pending_error(sock: socket.socket) -> int:
    """``sock``'s pending error (``SO_ERROR``: reading it clears it), or EBADF if closed."""
    try:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError as exc:
        return exc.errno or errno.EBADF
