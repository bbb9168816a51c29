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
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
import weakref
from typing import ClassVar, Protocol

__all__ = ["EVERY_S", "IDLE_S", "ResetWatch", "drops_resets"]

EVERY_S = 1.0  # how often the idle sockets are asked
IDLE_S = 1.0  # nothing read for this long: idle


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
        self._loop = loop
        self._watched: set[Watched] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.asked = 0  # pending errors asked for
        self.found = 0  # resets found so

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> ResetWatch | None:
        """The watch of ``loop``, or None where the loop reports resets itself."""
        watch = cls._per_loop.get(loop)
        if watch is None:
            if not drops_resets(loop):
                return None
            watch = cls._per_loop[loop] = cls(loop)
        return watch

    def add(self, transport: Watched) -> None:
        """Watch ``transport`` until :meth:`discard`."""
        self._watched.add(transport)
        if self._timer is None:
            self._timer = self._loop.call_later(EVERY_S, self._check)

    def discard(self, transport: Watched) -> None:
        """Stop watching ``transport`` (it closed)."""
        self._watched.discard(transport)

    def _check(self) -> None:
        self._timer = None
        idle_before = time.time() - IDLE_S
        for transport in [t for t in self._watched if t.arrived < idle_before]:
            self.asked += 1
            error = transport.pending_error()
            if error:
                self.found += 1
                self._watched.discard(transport)
                name = errno.errorcode.get(error, "")
                kind = ConnectionResetError if error == errno.ECONNRESET else OSError
                transport.reset_found(kind(error, f"{os.strerror(error)} ({name}, found idle)"))
        if self._watched:
            self._timer = self._loop.call_later(EVERY_S, self._check)


def pending_error(sock: socket.socket) -> int:
    """``sock``'s pending error (``SO_ERROR``: reading it clears it), or EBADF if closed."""
    try:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError as exc:
        return exc.errno or errno.EBADF
