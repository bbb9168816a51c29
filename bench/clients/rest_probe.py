"""The independent REST probe: one connection, about 10 requests a second, in its own process.

``python bench/clients/rest_probe.py CONTROL_DIR NAME URL``

Latency is from the send to the last byte of the body, as the closed-model
generators measure it; requests never overlap (one at a time, on a 100 ms
schedule that skips ahead rather than bursting when a request was slow).
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import uvloop

from bench.control import Control
from bench.quantiles import latency_doc

INTERVAL_S = 0.1


async def drive(ctl: Control, url: str) -> None:
    """Probe from ``mark`` to ``stop``."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url) as resp:  # open the connection before measuring
            await resp.read()
        ctl.ready()
        await ctl.wait("mark")
        due = time.monotonic()
        while not ctl.is_set("stop"):
            t0 = time.perf_counter()
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
            due = max(due + INTERVAL_S, time.monotonic())
            await asyncio.sleep(due - time.monotonic())
    ctl.write_result({"errors": errors, **latency_doc(latencies)})


def main(argv: list[str]) -> None:
    """Entry point."""
    control_dir, name, url = argv
    uvloop.run(drive(Control(control_dir, name), url))


if __name__ == "__main__":
    main(sys.argv[1:])
