"""Arrival times from the kernel: plain TCP connections whose reads say when Linux received the data.

A frame read by an event loop busy with thousands of sockets is timed late by
however long the loop took to reach its socket. Linux stamps every received
segment (``SO_TIMESTAMPNS``) and hands the stamp of the last segment a read
consumed to ``recvmsg`` as ancillary data, so the arrival time of the bytes a
read returns does not depend on when the loop got round to reading them.

:func:`loadsvc.users.connect.open_connection` opens such a connection (a :class:`StampedTransport`
over ``loop.add_reader`` on a non-blocking socket: uvloop's transports cannot
be subclassed, and ``recv`` drops the stamp) where the platform allows, else
the loop's own transport. Either way the protocol asks :func:`arrival_of` (wall
clock, comparable to a publish stamp) or :func:`age_of` (seconds since the last
read's data arrived, for a monotonic clock) when it times a byte, and
:func:`clock_of` says which clock that was: ``kernel`` or ``loop``.

Stamps are CLOCK_REALTIME, the clock of ``time.time()`` and of the publish
stamps servers write, so a WS delivery latency is stamp minus publish stamp as
before. A REST latency runs on a monotonic clock: the response's arrival is
``clock() - age``, where age = ``time.time()`` minus the stamp, read together.

TLS is decrypted above a stamped socket (:mod:`loadsvc.users.stamped_tls`), so
https:// and wss:// are kernel-timed too. Falls back to the loop's clock: off
Linux, where the socket option is refused, when the kernel clock is turned off,
for what connects through a proxy, and for any read without a stamp (e.g. packets
that arrived in the instant the kernel turned stamping on); such a connection
reports ``loop``.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import sys
import time
from array import array
from collections.abc import Callable
from typing import ClassVar, Literal

from loadsvc.users.endings import Endings
from loadsvc.users.readturns import ReadTurns
from loadsvc.users.resetwatch import ResetWatch, pending_error

ArrivalClock = Literal["kernel", "loop"]  # metrics.ARRIVAL_CLOCKS, the label's values

# The socket module does not export these; the values of the generic Linux ABI (x86-64,
# arm64, riscv, ppc, s390: not alpha, mips, parisc or sparc, which are left to the loop's
# clock). SCM_TIMESTAMPNS equals SO_TIMESTAMPNS: a struct timespec of the native time_t.
SO_TIMESTAMPNS = 35
_GENERIC_ABI = ("x86_64", "aarch64", "arm64", "riscv64", "ppc64le", "ppc64", "s390x")
_TIMESPEC = struct.Struct("@qq")
_unpack_timespec = _TIMESPEC.unpack_from
_TIMESPEC_SIZE = _TIMESPEC.size
_ANCILLARY_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
# Bytes per recvmsg: a buffer this size is allocated per read and shrunk to what came.
# Small: 256 KiB (asyncio's size) costs ~20 us a read, and 64 KiB buffers shrunk to a few
# bytes that stay queued fragment the heap under a ping flood (peak RSS +45 MB, against
# +5 MB at 16 KiB, tests/adversarial/test_ws_flood.py). A /ws/market frame is one read.
READ_SIZE = 16 * 1024
_READS_PER_TURN = 16  # up to 256 KiB a turn, as uvloop reads
# A stamp further from now than this is not trusted (another clock base): the read is
# timed by the loop. A loop that stalls an hour has other problems.
_MAX_AGE_S = 3600.0
_FUTURE_S = 0.001

_wall_clock = time.time  # a module global: one lookup per read instead of two

# Stamp-to-read delays (loop time at a stamped read minus its stamp) not yet taken by the
# loop-lag monitor (:func:`take_read_delays`, 20 times a second): one append per read. Past
# this many (nobody taking them) new ones are dropped, so memory stays bounded.
_MAX_PENDING_DELAYS = 1 << 17
_read_delays: array[float] = array("d")


def _probe() -> socket.socket | None:
    """A socket with stamping on if this platform stamps TCP reads (Linux with the generic
    ABI, the option accepted), else None."""
    if not sys.platform.startswith("linux"):
        return None
    import platform

    if platform.machine() not in _GENERIC_ABI:
        return None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        sock.close()
        return None
    return sock


# Kept open for the life of the process: Linux stamps packets only while some socket wants
# stamps, and turns stamping on in a deferred work item when the first one asks, so packets
# that arrive just after (a connection's first reads) would be unstamped. With this socket
# it is on from import, and stays on between connections.
_STAMPING_ON = _probe()
SUPPORTED = _STAMPING_ON is not None
_enabled = SUPPORTED


def use_kernel_clock(enabled: bool) -> None:
    """Time new connections by the kernel (when ``SUPPORTED``) or by the loop.

    For benchmarks and tests that compare the two clocks in one process or run;
    a service leaves the default (the kernel's where supported).
    """
    global _enabled
    _enabled = enabled and SUPPORTED


def kernel_clock_enabled() -> bool:
    """Whether new plain TCP connections are timed by the kernel."""
    return _enabled


class KernelTimedTransport(asyncio.Transport):
    """A transport whose reads carry the kernel's receive stamp: what the clocks below ask.

    ``arrived`` is set right before each ``data_received``; ``unstamped_reads`` counts
    reads that came without a stamp. :class:`StampedTransport` (plain TCP) and TLS over
    it (:class:`loadsvc.users.stamped_tls.StampedTLSTransport`).
    """

    arrived: float
    unstamped_reads: int


class StampedTransport(KernelTimedTransport):
    """A TCP transport that reads with ``recvmsg`` and keeps the kernel's stamp of each read.

    ``arrived`` is the wall-clock time (CLOCK_REALTIME) at which the last segment
    of the latest read arrived: for a frame completed by that read, the arrival of
    its last byte. The protocol's ``data_received`` runs right after it is set.
    A read without a usable stamp takes ``time.time()`` and is counted in
    ``unstamped_reads``. Once its reads are stamped, a read found ready after the
    turn's read budget is spent waits for a later turn
    (:class:`loadsvc.users.readturns.ReadTurns`): a broadcast's sockets are read over
    several turns, each read keeping its stamp; a socket that waits there long is taken
    off the loop's poll meanwhile (woken past ``readturns.BREAK_EVEN``). Writes, flow
    control and closing behave as asyncio's socket transport.
    """

    # Reads of every stamped transport of the process that came without a usable stamp.
    unstamped_in_process: ClassVar[int] = 0

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.Protocol
    ) -> None:
        super().__init__(
            extra={"socket": sock, "sockname": sock.getsockname(), "peername": sock.getpeername()}
        )
        self._loop = loop
        self._sock = sock
        self._recvmsg = sock.recvmsg  # looked up once: this is the per-read path
        self._fd = sock.fileno()
        self._protocol = protocol
        self._buffer: collections.deque[memoryview] = collections.deque()
        self._buffered = 0
        self._closing = False
        self._lost = False  # connection_lost scheduled or done
        self._reading = False  # the protocol wants reads (not paused, not closing)
        self._polled = False  # the reader is registered with the loop
        self._turns = ReadTurns.of(loop)
        self._resets = ResetWatch.of(loop)  # None where the loop reports resets itself
        self._left = False  # queued on _turns, for a later turn to read
        self._wakes = 0  # readiness reports while queued (the poll is level-triggered)
        self._eof_written = False
        self._writing_paused = False
        self._high = 64 * 1024
        self._low = self._high // 4
        self.arrived = 0.0
        self.stamped_reads = 0
        self.unstamped_reads = 0

    def start(self) -> None:
        """Hand the transport to its protocol and start reading."""
        self._protocol.connection_made(self)
        if not self._closing:
            self.resume_reading()
            if self._resets is not None:
                self._resets.add(self)

    # -- reading ---------------------------------------------------------------

    def _read_ready(self) -> None:
        # A socket whose reads are stamped can be read in a later turn without its bytes
        # being timed later (loadsvc.users.readturns): past this turn's budget it is queued
        # for a later turn to read. One read on the loop's clock and it never is: there the
        # time of the read is the arrival time.
        if self._left:  # queued: the queue reads it, this wake-up is wasted
            self._wakes += 1
            # Woken past the break-even: off the poll until the queue has read it.
            if self._polled and self._turns.woken(self._wakes):
                self._unpoll()
            return
        if self.stamped_reads and not self.unstamped_reads and self._turns.leave(self):
            self._left = True
            return
        self._read_now()

    def _read_left(self) -> None:
        """The read left for this turn (:class:`ReadTurns`), unless paused or closed since;
        back on the poll after it if it was taken off and still reads."""
        self._left = False
        self._wakes = 0
        if self._reading:
            self._read_now()
            # After the read: one that ends the stream or closes adds no reader to remove.
            if self._reading and not self._polled:
                self._poll()

    def _poll(self) -> None:
        self._polled = True
        self._wakes = 0
        self._loop.add_reader(self._fd, self._read_ready)

    def _unpoll(self) -> None:
        self._polled = False
        self._loop.remove_reader(self._fd)

    def _read_now(self) -> None:
        # A full buffer means more may be waiting: read on (up to 256 KiB, as uvloop reads in
        # one go) so that a large response completes in one turn of the loop, not in one
        # read per turn with other users' work in between.
        for _ in range(_READS_PER_TURN):
            try:
                data, ancillary, _, _ = self._recvmsg(READ_SIZE, _ANCILLARY_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._force_close(exc)
                return
            if not data:
                self._read_eof()
                return
            now = _wall_clock()
            stamp = 0.0
            # The only option set on the socket, so the only message there can be.
            if ancillary:
                _, kind, raw = ancillary[0]
                if kind == SO_TIMESTAMPNS and len(raw) >= _TIMESPEC_SIZE:
                    sec, nsec = _unpack_timespec(raw)
                    stamp = sec + nsec * 1e-9
            if now - _MAX_AGE_S < stamp <= now + _FUTURE_S:
                self.arrived = stamp
                self.stamped_reads += 1
                if len(_read_delays) < _MAX_PENDING_DELAYS:
                    _read_delays.append(now - stamp)
            else:
                self.arrived = now
                self.unstamped_reads += 1
                StampedTransport.unstamped_in_process += 1
            try:
                self._protocol.data_received(data)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal(exc, "error in data_received")
                return
            if len(data) < READ_SIZE or not self._reading:  # drained, paused or closing
                return

    def _read_eof(self) -> None:
        self.pause_reading()
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal(exc, "error in eof_received")
            return
        if not keep_open:
            self.close()

    def pause_reading(self) -> None:
        """Stop reading until :meth:`resume_reading`."""
        self._stop_reading()

    def resume_reading(self) -> None:
        """Read again."""
        if not self._reading and not self._closing:
            self._reading = True
            if not self._polled:
                self._poll()

    def is_reading(self) -> bool:
        """Whether the transport is reading."""
        return self._reading

    # -- writing ---------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` now as far as the socket takes it; buffer the rest."""
        if self._closing or self._eof_written or not data:
            return
        # A request's prebuilt bytes go as they are (no view made per write, the common case).
        view = data if type(data) is bytes else memoryview(data).cast("B")
        if not self._buffer:
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._force_close(exc)
                return
            if sent == len(view):
                return
            view = memoryview(view).cast("B")[sent:]
            self._loop.add_writer(self._fd, self._write_ready)
        # A copy: the caller may reuse its buffer.
        self._buffer.append(memoryview(bytes(view)))
        self._buffered += len(view)
        self._maybe_pause_writing()

    def _write_ready(self) -> None:
        while self._buffer:
            head = self._buffer[0]
            try:
                sent = self._sock.send(head)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._force_close(exc)
                return
            self._buffered -= sent
            if sent < len(head):
                self._buffer[0] = head[sent:]
                return
            self._buffer.popleft()
        self._loop.remove_writer(self._fd)
        self._maybe_resume_writing()
        if self._closing:
            self._schedule_lost(None)
        elif self._eof_written:
            self._shutdown_write()

    def _maybe_pause_writing(self) -> None:
        if self._buffered > self._high and not self._writing_paused:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _maybe_resume_writing(self) -> None:
        if self._writing_paused and self._buffered <= self._low:
            self._writing_paused = False
            self._protocol.resume_writing()

    def write_eof(self) -> None:
        """Close the write side once the buffer is sent."""
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        if not self._buffer:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._force_close(exc)

    def can_write_eof(self) -> bool:
        """Always: TCP has a half-close."""
        return True

    def get_write_buffer_size(self) -> int:
        """Bytes waiting to be sent."""
        return self._buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """(low, high) water marks of the write buffer."""
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Water marks for pause_writing/resume_writing, as asyncio sets them."""
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_writing()

    # -- closing ---------------------------------------------------------------

    def is_closing(self) -> bool:
        """Whether the transport is closing or closed."""
        return self._closing

    def close(self) -> None:
        """Stop reading; close once the write buffer is sent."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._schedule_lost(None)

    def abort(self) -> None:
        """Close at once, dropping unsent data."""
        self._force_close(None)

    def _fatal(self, exc: BaseException, message: str) -> None:
        self._loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        if exc is not None:
            # Its traceback holds this transport's frame, which holds the protocol: a cycle
            # per lost connection that only the cyclic collector frees, all at once after a
            # backend restart (issue 20). The type and message are all anyone reads.
            exc.__traceback__ = None
        if self._buffer:
            self._buffer.clear()
            self._buffered = 0
            self._loop.remove_writer(self._fd)
        self._closing = True
        self._stop_reading()
        self._schedule_lost(exc)

    def _stop_reading(self) -> None:
        # Off the poll while queued (_unpoll): no reader to remove, none added back.
        self._reading = False
        if self._polled:
            self._unpoll()

    def _schedule_lost(self, exc: BaseException | None) -> None:
        if not self._lost:
            self._lost = True
            # In slices with the other endings of this turn (a backend restart ends them all).
            Endings.of(self._loop).push(self._connection_lost, exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        if self._resets is not None:
            self._resets.discard(self)
        try:
            self._protocol.connection_lost(exc if isinstance(exc, Exception) else None)
        finally:
            self._loop.remove_writer(self._fd)
            self._sock.close()
            # As asyncio's transports do: the protocol holds this transport, so keeping it
            # here would leave a cycle per closed connection for the cyclic collector.
            self._protocol = _GONE

    def pending_error(self) -> int:
        """The socket's pending error (``SO_ERROR``), 0 if none (:mod:`.resetwatch`)."""
        return pending_error(self._sock)

    def reset_found(self, exc: OSError) -> None:
        """A reset the loop did not report (:mod:`.resetwatch`): closed as by a read."""
        self._force_close(exc)

    # -- protocol --------------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the stream to another protocol."""
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The current protocol."""
        return self._protocol


_GONE = asyncio.Protocol()  # what a closed transport points at instead of its protocol


def take_read_delays() -> array[float]:
    """The stamp-to-read delays (seconds) of the stamped reads since the last call.

    How long the bytes of each read waited in the kernel before the loop read them: the
    kernel rule of :mod:`loadsvc.lag` (the loop-lag monitor takes them, one taker a process).
    """
    global _read_delays
    taken, _read_delays = _read_delays, array("d")
    return taken


def _now_age() -> float:
    return 0.0


def arrival_of(transport: asyncio.BaseTransport) -> Callable[[], float]:
    """How ``transport``'s protocol reads the wall-clock arrival of the bytes it was just given."""
    if isinstance(transport, KernelTimedTransport):
        return lambda: transport.arrived
    return time.time


def age_of(transport: asyncio.BaseTransport | None) -> Callable[[], float]:
    """Seconds since the bytes just given to the protocol arrived (0 on the loop's clock)."""
    if isinstance(transport, KernelTimedTransport):
        return lambda: max(0.0, time.time() - transport.arrived)
    return _now_age


def clock_of(transport: asyncio.BaseTransport | None) -> ArrivalClock:
    """Which clock has timed ``transport``'s reads: ``kernel`` only if every read was stamped."""
    if isinstance(transport, KernelTimedTransport) and transport.unstamped_reads == 0:
        return "kernel"
    return "loop"
