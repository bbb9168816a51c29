"""Run the reference target as a process: `run_target(host, port)` blocks until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from aiohttp import web

from loadsvc.target.app import build_app
from loadsvc.target.settings import TargetSettings

# Reconnect storms open hundreds of connections at once; the default of 128 would drop SYNs.
_LISTEN_BACKLOG = 1024
# Handlers end promptly once the app's shutdown hook has closed its clients and released
# its stalls; this only bounds a pathological case.
_SHUTDOWN_TIMEOUT_S = 5.0


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on `host:port` in the running loop; return the runner and the bound port."""
    # No access log: one line per request would cost more than answering it.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=_LISTEN_BACKLOG)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port: int = runner.addresses[0][1]
    return runner, bound_port


async def serve_target(host: str, port: int, settings: TargetSettings | None = None) -> None:
    """Serve the target until SIGTERM or SIGINT, then shut down cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner, bound_port = await start_site(build_app(settings), host, port)
    try:
        print(f"loadsvc target listening on http://{host}:{bound_port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_target(host: str, port: int, settings: TargetSettings | None = None) -> None:
    """Run the target on `host:port` (port 0 picks a free one) until SIGTERM or SIGINT.

    Uses uvloop when it is installed and prints one line with the listening URL.
    """
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve_target(host, port, settings))
