"""The bare REST baseline: N aiohttp tasks in a GET loop on uvloop, nothing recorded.

``python bench/clients/aiohttp_loop.py CONTROL_DIR NAME URL USERS``
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import uvloop

from bench.control import Control


async def user(session: aiohttp.ClientSession, url: str, stopping: asyncio.Event) -> None:
    """GET ``url`` and read the body, again and again."""
    while not stopping.is_set():
        async with session.get(url) as resp:
            await resp.read()


async def drive(ctl: Control, url: str, users: int) -> None:
    """Load between ``go`` and ``stop``."""
    stopping = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        ctl.ready()
        await ctl.wait("go")
        tasks = [asyncio.create_task(user(session, url, stopping)) for _ in range(users)]
        await ctl.wait("stop")
        stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    ctl.write_result({"users": users})


def main(argv: list[str]) -> None:
    """Entry point."""
    control_dir, name, url, users = argv
    uvloop.run(drive(Control(control_dir, name), url, int(users)))


if __name__ == "__main__":
    main(sys.argv[1:])
