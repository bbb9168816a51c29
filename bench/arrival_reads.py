"""CPU per socket read: the loop's own transport (today) against the kernel-stamped one, paired.

``python bench/arrival_reads.py [--connections 2000] [--rounds 6] [--window 3]``

A broadcaster (a child process on the first core) writes a ~7 KB frame to every
connection every 100 ms, as a throttled WS backend does. This process, on the
second core, on uvloop, holds the connections with a protocol that does what
``TimedConnection.data_received`` does per read apart from parsing (count it, take
its arrival time) and reads the CPU it used (``time.process_time``) over a window.
Rounds alternate the transport (uvloop's own, arrival = ``time.time()``; then
:class:`~loadsvc.users.arrival.StampedTransport`, arrival = the kernel's stamp),
so both are measured in one sitting on a shared machine; the table shows each
round and the median of CPU microseconds per read. 127.0.0.1 only; a run is
bounded by ``rounds * 2 * (window + ~2 s)``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench import procs
from bench.table import Table
from loadsvc.users import arrival, connect

FRAME = b"\x81\x7e\x1b\x58" + b"x" * 7000  # a 7,000-byte text frame as a server sends it
PERIOD_S = 0.1


async def broadcast(port_file: Path) -> None:
    """Serve on 127.0.0.1: write FRAME to every connection every PERIOD_S (the child's job)."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await reader.read()  # until the client goes
        except ConnectionError:
            pass  # a client that closes with frames unread resets: the normal end here
        finally:
            writers.remove(writer)
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, backlog=4096)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    while True:
        for w in list(writers):
            t = w.transport
            if not t.is_closing() and t.get_write_buffer_size() < 1 << 20:  # skip a laggard
                w.write(FRAME)
        await asyncio.sleep(PERIOD_S)


class CountingReads(asyncio.Protocol):
    """Per read: what TimedConnection.data_received does before parsing (count, time it)."""

    reads = 0
    nbytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._arrival = arrival.arrival_of(transport)
        self.last = 0.0

    def data_received(self, data: bytes) -> None:
        CountingReads.reads += 1
        CountingReads.nbytes += len(data)
        self.last = self._arrival()


async def one_round(port: int, connections: int, kernel: bool, window_s: float) -> dict[str, float]:
    """Open ``connections`` with one transport, measure CPU per read over ``window_s``, close."""
    arrival.use_kernel_clock(kernel)
    opened = []
    for i in range(0, connections, 200):  # in batches: the listen backlog
        opened += await asyncio.gather(
            *(
                connect.open_connection(CountingReads, "127.0.0.1", port)
                for _ in range(min(200, connections - i))
            )
        )
    stamped = sum(isinstance(t, arrival.StampedTransport) for t, _ in opened)
    assert stamped == (connections if kernel else 0), "the wrong transport was measured"
    await asyncio.sleep(1.0)  # warm-up: the broadcast reaches every connection
    reads0, bytes0, cpu0 = CountingReads.reads, CountingReads.nbytes, time.process_time()
    await asyncio.sleep(window_s)
    cpu = time.process_time() - cpu0
    reads = CountingReads.reads - reads0
    nbytes = CountingReads.nbytes - bytes0
    for transport, _ in opened:
        transport.close()
    await asyncio.sleep(0.3)
    return {
        "reads": reads,
        "bytes_per_read": nbytes / max(1, reads),
        "us_per_read": cpu / max(1, reads) * 1e6,
    }


async def measure(
    port: int, connections: int, rounds: int, window_s: float
) -> list[tuple[str, dict[str, float]]]:
    """Alternate the two transports, starting with each in turn."""
    out = []
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for kernel in order:
            out.append(
                (
                    "kernel" if kernel else "loop",
                    await one_round(port, connections, kernel, window_s),
                )
            )
    return out


def main() -> None:
    """Start the broadcaster, alternate the transports, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--window", type=float, default=3.0)
    p.add_argument("--serve", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        uvloop.run(broadcast(Path(args.serve)))
        return
    if not arrival.SUPPORTED:
        sys.exit("this platform does not stamp TCP reads: nothing to compare")
    server_core, client_core = procs.cores()
    port_file = Path(f"/tmp/arrival_reads.{os.getpid()}.port")
    log = Path(f"/tmp/arrival_reads.{os.getpid()}.log")
    child = procs.spawn([sys.executable, __file__, "--serve", str(port_file)], server_core, log)
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if child.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the broadcaster did not start (see {log})")
            time.sleep(0.05)
        os.sched_setaffinity(0, {client_core})
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(procs.NOFILE, hard), hard))
        rows = uvloop.run(
            measure(int(port_file.read_text()), args.connections, args.rounds, args.window)
        )
    finally:
        procs.stop(child)
        port_file.unlink(missing_ok=True)
    by_clock = {c: [r["us_per_read"] for k, r in rows if k == c] for c in ("loop", "kernel")}
    table = Table(
        f"CPU per read, {args.connections} connections, a 7 KB frame each every {PERIOD_S * 1000:.0f} ms",
        ["transport", "round", "reads", "bytes per read", "CPU us per read"],
        [
            [
                "uvloop's (loop clock)" if k == "loop" else "StampedTransport (kernel clock)",
                str(i // 2 + 1),
                f"{r['reads']:,.0f}",
                f"{r['bytes_per_read']:,.0f}",
                f"{r['us_per_read']:.2f}",
            ]
            for i, (k, r) in enumerate(rows)
        ],
        note=(
            f"median us per read: loop {statistics.median(by_clock['loop']):.2f}, kernel "
            f"{statistics.median(by_clock['kernel']):.2f} (difference "
            f"{statistics.median(by_clock['kernel']) - statistics.median(by_clock['loop']):+.2f}). "
            "CPU = this process's user+system time over the window, including the loop's polling."
        ),
    )
    print(table.text())


if __name__ == "__main__":
    main()
