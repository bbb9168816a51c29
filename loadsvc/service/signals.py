"""The one signal loop of ``loadsvc serve``, in-process or as the ``--workers`` front.

SIGTERM/SIGINT: stop (gracefully, as the served thing defines it), then exit
with its code. SIGHUP: reload. The handlers are installed before the service
starts, so a SIGTERM that arrives while it starts still stops it gracefully
(never the default kill), and a SIGHUP then is applied once it has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog

log = structlog.get_logger("loadsvc.serve")

EXIT_FAILED = 1
Watch = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A task that sets the event when the process should stop (e.g. its front is gone)."""


class Served(Protocol):
    """What the signal loop runs: something that opens a port, reloads and stops."""

    async def start(self) -> None:
        """Open the port and begin; OSError when the port cannot be opened (cleaned up)."""

    def request_reload(self) -> None:
        """SIGHUP: reload the configuration in the background."""

    async def stop(self) -> int:
        """Stop gracefully; the process's exit code."""


async def serve_until_signalled(
    served: Served,
    *,
    host: str,
    port: int,
    log_fields: dict[str, str] | None = None,
    watch: Watch | None = None,
) -> int:
    """Start ``served``, run until SIGTERM/SIGINT (or ``watch`` says stop), stop; exit code.

    1 when the port cannot be opened; else what ``served.stop()`` returns.
    """
    fields = log_fields or {}
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    started = False
    reload_pending = False

    def on_stop(signame: str) -> None:
        if not done.is_set():
            log.info("shutting down", signal=signame, **fields)
        done.set()

    def on_reload() -> None:
        nonlocal reload_pending
        if started:
            served.request_reload()
        else:  # reloading a half-started service would race its start
            reload_pending = True

    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, AttributeError):
            if sig == signal.SIGHUP:
                loop.add_signal_handler(sig, on_reload)
            else:
                loop.add_signal_handler(sig, on_stop, sig.name)
            installed.append(sig)
    try:
        try:
            await served.start()
        except OSError as exc:
            log.error("cannot listen", host=host, port=port, error=str(exc))
            return EXIT_FAILED
        started = True
        if reload_pending:
            served.request_reload()
        watcher = loop.create_task(watch(done)) if watch is not None else None
        try:
            await done.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
            code = await served.stop()
        return code
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
