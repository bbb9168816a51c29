"""The reference target as a real process: serves on the given port and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import aiohttp
from target_support import eventually, scaled


def free_port() -> int:
    """A port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_run_target_serves_healthz_and_exits_0_on_sigterm() -> None:
    """run_target() serves /healthz on the given port, prints its URL, and SIGTERM exits 0."""
    port = free_port()
    code = f"from loadsvc.target.server import run_target; run_target('127.0.0.1', {port})"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def healthy() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        return resp.status == 200 and await resp.json() == {"status": "ok"}
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(healthy, within=15.0, what="the target process answering")
        process.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.wait_for(process.communicate(), scaled(10.0))
        assert process.returncode == 0
        assert f"listening on http://127.0.0.1:{port}" in stdout.decode()
    finally:
        if process.returncode is None:
            process.kill()  # only our own child, by its PID
            await process.wait()
