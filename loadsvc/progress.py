"""Live progress of a one-shot run: a redrawn line on a terminal, periodic log lines off one."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TextIO

import structlog

from loadsvc.runner import ScenarioRun


@dataclass
class _Totals:
    at: float = 0.0
    requests: int = 0
    frames: int = 0
    errors: int = 0


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}ms"


class Progress:
    """Reports a running ScenarioRun every ``interval`` seconds."""

    def __init__(
        self, run: ScenarioRun, stream: TextIO = sys.stderr, interval: float | None = None
    ):
        self.run = run
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval if interval is not None else (1.0 if self.tty else 10.0)
        self._last = _Totals()
        self._log = structlog.get_logger("loadsvc.progress").bind(scenario=run.spec.name)

    async def loop(self) -> None:
        """Report until cancelled."""
        try:
            while True:
                await asyncio.sleep(self.interval)
                self.report()
        finally:
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()

    def report(self) -> None:
        """One progress report."""
        stats = self.run.stats
        if stats is None:
            return
        now = self.run.clock()
        t = _Totals(at=now)
        p95: float | None = None
        p99: float | None = None
        # Endpoints with no latency sample yet: the verdict would be "no data" if the run ended now.
        no_data = [ep.endpoint for ep in stats.endpoints.values() if ep.latency.count == 0]
        for ep in stats.endpoints.values():
            if ep.judged.protocol.connections:  # a stream counts frames, not requests
                t.frames += ep.count
            else:
                t.requests += ep.count
            t.errors += ep.errors
            q95, q99 = ep.latency.live_quantile(0.95), ep.latency.live_quantile(0.99)
            p95 = q95 if p95 is None or (q95 is not None and q95 > p95) else p95
            p99 = q99 if p99 is None or (q99 is not None and q99 > p99) else p99
        dt = (now - self._last.at) if self._last.at else max(self.run.elapsed(), 1e-9)
        req_s = (t.requests - self._last.requests) / dt
        msg_s = (t.frames - self._last.frames) / dt
        self._last = t
        planned = self.run.planned_s
        elapsed = self.run.elapsed()
        users = self.run.user_count()
        if self.tty:
            plan = f"{planned:.0f}s" if planned is not None else "∞"
            line = (
                f"\r{self.run.spec.name}  {elapsed:5.0f}s/{plan}  users {users:5d}  "
                f"req/s {req_s:8.1f}  msg/s {msg_s:8.1f}  worst p95 {_fmt_ms(p95)} "
                f"p99 {_fmt_ms(p99)}  errors {t.errors}"
            )
            if no_data:
                line += f"  no data: {', '.join(no_data)}"
            self.stream.write(line.ljust(110))
            self.stream.flush()
        else:
            self._log.info(
                "progress",
                elapsed_s=round(elapsed, 1),
                planned_s=planned,
                users=users,
                req_per_s=round(req_s, 1),
                msg_per_s=round(msg_s, 1),
                worst_p95_ms=None if p95 is None else round(p95 * 1000, 1),
                worst_p99_ms=None if p99 is None else round(p99 * 1000, 1),
                errors=t.errors,
                no_data=no_data or None,
            )
