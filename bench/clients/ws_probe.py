"""The independent WS probe: a small share of connections in a process of their own, nearly idle.

``python bench/clients/ws_probe.py CONTROL_DIR NAME URL CONNECTIONS``

The target sends each frame to its clients one after another, so a client's
delivery latency depends on its place in that order; one connection would sample
one fixed place, and its p99 would say where that place happens to be. A share
of the connections (5 %, see bench/plan.py) samples the spread of the fan-out,
at a message rate (a few hundred a second at most) that leaves the probe idle,
so what it measures is the target and the network, not its own queue.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import time

import orjson
import uvloop
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.control import Control
from bench.quantiles import latency_doc


async def stream(
    url: str, latencies: list[float], measuring: list[bool], tls: ssl.SSLContext | None
) -> None:
    """Time every data frame from its publish stamp."""
    async with connect(url, compression=None, ssl=tls) as ws:
        try:
            while True:
                message = await ws.recv(decode=False)
                arrived = time.time()
                doc = orjson.loads(message)
                if measuring[0] and doc.get("type") != "status":
                    latencies.append(arrived - doc["published_at"])
        except ConnectionClosed:
            pass


async def drive(ctl: Control, url: str, connections: int) -> None:
    """Connect at once; measure from ``mark`` to ``stop``."""
    latencies: list[float] = []
    measuring = [False]
    # bench/ws_arrival.py --tls: wss:// through a TLS proxy whose certificate this CA issued.
    ca_file = os.environ.get("BENCH_CA_FILE")
    tls = ssl.create_default_context(cafile=ca_file) if ca_file else None
    tasks = [
        asyncio.create_task(stream(url, latencies, measuring, tls)) for _ in range(connections)
    ]
    ctl.ready()
    await ctl.wait("mark")
    measuring[0] = True
    await ctl.wait("stop")
    measuring[0] = False
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ctl.write_result({"connections": connections, **latency_doc(latencies)})


def main(argv: list[str]) -> None:
    """Entry point."""
    control_dir, name, url, connections = argv
    uvloop.run(drive(Control(control_dir, name), url, int(connections)))


if __name__ == "__main__":
    main(sys.argv[1:])
