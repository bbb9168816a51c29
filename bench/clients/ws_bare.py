"""The bare WS baseline: N ``websockets`` connections, each frame parsed with orjson.

``python bench/clients/ws_bare.py CONTROL_DIR NAME URL CONNECTIONS RATE``

Library defaults throughout; the only work per frame is the parse and the
delivery latency (receive time minus ``published_at``), kept from ``mark`` on.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
import uvloop
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.control import Control
from bench.quantiles import latency_doc


class Tally:
    """Frames and latencies since ``mark``."""

    def __init__(self) -> None:
        self.measuring = False
        self.frames = 0
        self.latencies: list[float] = []


async def stream(url: str, tally: Tally) -> None:
    """Receive until the connection closes."""
    async with connect(url) as ws:
        try:
            async for message in ws:
                doc = orjson.loads(message)
                latency = time.time() - doc["published_at"]
                if tally.measuring:
                    tally.frames += 1
                    if doc["type"] != "status":
                        tally.latencies.append(latency)
        except ConnectionClosed:
            pass


async def drive(ctl: Control, url: str, connections: int, rate: float) -> None:
    """Connect at ``rate`` per second after ``go``; count from ``mark`` to ``stop``."""
    tally = Tally()
    ctl.ready()
    await ctl.wait("go")
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    while len(tasks) < connections and not ctl.is_set("stop"):
        due = min(connections, int((time.monotonic() - started) * rate) + 1)
        tasks.extend(asyncio.create_task(stream(url, tally)) for _ in range(due - len(tasks)))
        await asyncio.sleep(0.05)
    await ctl.wait("mark")
    tally.measuring = True
    await ctl.wait("stop")
    tally.measuring = False
    for t in tasks:
        t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = sum(1 for r in results if isinstance(r, Exception))
    ctl.write_result(
        {"frames": tally.frames, "failed_connections": failed, **latency_doc(tally.latencies)}
    )


def main(argv: list[str]) -> None:
    """Entry point."""
    control_dir, name, url, connections, rate = argv
    uvloop.run(drive(Control(control_dir, name), url, int(connections), float(rate)))


if __name__ == "__main__":
    main(sys.argv[1:])
