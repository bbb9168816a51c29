"""CPU per socket read of a ~7 KB frame, by how the read is made: what is left to cut.

``python bench/read_calls.py [--reads 20000] [--rounds 5]``

One process, one core, no event loop: a TCP connection on 127.0.0.1 with
``SO_TIMESTAMPNS`` on the reading side; the writer sends one /ws/market-sized frame,
the reader takes it with each way of reading in turn, and only the read is timed
(``time.thread_time_ns``, CPU time). Ways, in the order they alternate per round:

- ``recvmsg+parse``: what ``StampedTransport`` does (fresh bytes, cmsg parsed);
- ``recvmsg_into+copy``: a reused buffer, then ``bytes`` of what came (the protocol
  keeps the bytes, so a copy is needed);
- ``recvmsg``: ``recvmsg`` without parsing the stamp;
- ``recv``: no ancillary data at all (the floor: the syscall and one bytes).

Prints each round and the median in microseconds per read. Bounded by
``rounds * 4 * reads`` reads.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import time
from collections.abc import Callable

SO_TIMESTAMPNS = 35  # the generic Linux ABI, as loadsvc.users.arrival
TIMESPEC = struct.Struct("@qq")
ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size)
READ_SIZE = 16 * 1024  # loadsvc.users.arrival.READ_SIZE
FRAME = b"\x81\x7e\x1b\x58" + b"x" * 7000


def ways(sock: socket.socket) -> dict[str, Callable[[], bytes]]:
    """The ways of reading one frame from ``sock``, by name."""
    unpack = TIMESPEC.unpack_from
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    bufs = [buf]

    def stamp_of(ancillary: list[tuple[int, int, bytes]]) -> float:
        if ancillary:
            _, kind, raw = ancillary[0]
            if kind == SO_TIMESTAMPNS and len(raw) >= TIMESPEC.size:
                sec, nsec = unpack(raw)
                return float(sec + nsec * 1e-9)
        return 0.0

    def recvmsg_parse() -> bytes:
        data, ancillary, _, _ = sock.recvmsg(READ_SIZE, ANCILLARY)
        stamp_of(ancillary)
        return data

    def recvmsg_into_copy() -> bytes:
        n, ancillary, _, _ = sock.recvmsg_into(bufs, ANCILLARY)
        stamp_of(ancillary)
        return bytes(view[:n])

    def recvmsg() -> bytes:
        return sock.recvmsg(READ_SIZE, ANCILLARY)[0]

    def recv() -> bytes:
        return sock.recv(READ_SIZE)

    return {
        "recvmsg+parse": recvmsg_parse,
        "recvmsg_into+copy": recvmsg_into_copy,
        "recvmsg": recvmsg,
        "recv": recv,
    }


def per_read_us(writer: socket.socket, read: Callable[[], bytes], reads: int) -> float:
    """CPU microseconds per read of one frame, the write not counted."""
    total = 0
    for _ in range(reads):
        writer.sendall(FRAME)
        start = time.thread_time_ns()
        data = read()
        total += time.thread_time_ns() - start
        if len(data) != len(FRAME):
            raise RuntimeError(f"read {len(data)} bytes of a {len(FRAME)}-byte frame")
    return total / reads / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with socket.create_server(("127.0.0.1", 0)) as server:
        reader = socket.create_connection(server.getsockname())
        writer, _ = server.accept()
    with reader, writer:
        reader.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        by_name = ways(reader)
        results: dict[str, list[float]] = {name: [] for name in by_name}
        for _ in range(args.rounds):
            for name, read in by_name.items():
                results[name].append(per_read_us(writer, read, args.reads))
    print(f"{'way':<20} {'median us/read':>14}  rounds")
    for name, values in results.items():
        rounds = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<20} {statistics.median(values):>14.2f}  {rounds}")


if __name__ == "__main__":
    main()
