"""What kernel-timed TLS costs: ``python bench/tls_arrival.py [--connections 500] [--seconds 5]``

Issue 22 item 1 over TLS: ``loadsvc/users/stamped_tls.py`` decrypts in Python (an
``ssl.SSLObject`` over ``MemoryBIO``s above the kernel-stamped socket) where the loop's
TLS transport (uvloop's, in C) read the socket itself. This measures the price: the
generator's CPU (``time.process_time``) per MB and per message of TLS received, for
``kernel`` (stamped TLS) and ``loop`` (uvloop's TLS transport), alternating in one run.

A TLS server in a child process on core 0 (a private CA's certificate for localhost,
``trustme``) sends a /ws/market-sized message (7 KB) every 500 ms to each connection,
as the seed's throttle does, phases spread; the client holds ``--connections`` on core 1
(uvloop) and counts bytes. The messages are not parsed: only the transport differs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme
import uvloop

from bench.table import Table
from loadsvc.users.arrival import clock_of, use_kernel_clock
from loadsvc.users.connect import open_connection

MESSAGE = 7 * 1024
EVERY_S = 0.5


def _pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        os.sched_setaffinity(0, {core})


async def serve(cert: str, port_file: str) -> None:
    """The TLS server: a message every EVERY_S to each connection until it goes."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert)
    payload = b"x" * MESSAGE

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(random.random() * EVERY_S)
        try:
            while not reader.at_eof():
                writer.write(payload)
                await writer.drain()
                await asyncio.sleep(EVERY_S)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=4096)
    Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


class Counting(asyncio.Protocol):
    """Counts what it receives."""

    received = 0

    def data_received(self, data: bytes) -> None:
        Counting.received += len(data)


async def trial(port: int, client: ssl.SSLContext, n: int, seconds: float) -> dict[str, float]:
    """Hold ``n`` TLS connections; the CPU per MB received over ``seconds``."""
    transports = []
    clocks = set()
    for _ in range(n):
        t, _ = await open_connection(Counting, "localhost", port, ssl=client)
        transports.append(t)
        clocks.add(clock_of(t))
    await asyncio.sleep(2 * EVERY_S)  # every connection's first message in
    cpu0, got0 = time.process_time(), Counting.received
    await asyncio.sleep(seconds)
    cpu, got = time.process_time() - cpu0, Counting.received - got0
    for t in transports:
        t.abort()
    (clock,) = clocks
    return {
        "clock": clock,
        "us_per_mb": cpu / (got / 1e6) * 1e6,
        "us_per_msg": cpu / (got / MESSAGE) * 1e6,
    }


async def measure(
    args: argparse.Namespace, port: int, client: ssl.SSLContext
) -> list[dict[str, float]]:
    """Alternate the clocks ``--repeats`` times."""
    rows = []
    for k in range(args.repeats):
        for kernel in (True, False) if k % 2 == 0 else (False, True):
            use_kernel_clock(kernel)
            rows.append(await trial(port, client, args.connections, args.seconds))
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    """Start the server, alternate the clocks, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=500)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        _pin(0)
        uvloop.run(serve(*args.serve))
        return
    ca = trustme.CA()
    with tempfile.TemporaryDirectory(prefix="tls_arrival.") as tmp:
        cert, port_file = f"{tmp}/server.pem", f"{tmp}/port"
        ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(cert)
        server = subprocess.Popen([sys.executable, __file__, "--serve", cert, port_file])
        try:
            deadline = time.monotonic() + 30
            while not Path(port_file).exists() or not Path(port_file).read_text():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the TLS server did not start")
                time.sleep(0.05)
            client = ssl.create_default_context()
            ca.configure_trust(client)
            _pin(1)
            rows = uvloop.run(measure(args, int(Path(port_file).read_text()), client))
        finally:
            server.terminate()  # by its PID: the child this run started
            server.wait(10)
    body = []
    for clock in ("kernel", "loop"):
        mine = [r for r in rows if r["clock"] == clock]
        per_mb = [r["us_per_mb"] for r in mine]
        per_msg = [r["us_per_msg"] for r in mine]
        body.append(
            [
                clock,
                f"{statistics.median(per_mb):,.0f} ({min(per_mb):,.0f}-{max(per_mb):,.0f})",
                f"{statistics.median(per_msg):.1f}",
            ]
        )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        Table(
            f"Generator CPU per TLS byte received, {args.connections:,} connections, {when}",
            ["arrival clock", "CPU us per MB, median (min-max)", "CPU us per 7 KB message"],
            body,
            note=(
                "kernel: loadsvc/users/stamped_tls.py (SSLObject over MemoryBIOs above the "
                "stamped socket); loop: uvloop's TLS transport. Messages not parsed."
            ),
        ).text()
    )


if __name__ == "__main__":
    main()
