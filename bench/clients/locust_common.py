"""What the two locustfiles share: the harness's steps, as a Locust load shape and a greenlet.

The shape holds 0 users until ``go``, then asks for ``BENCH_USERS`` at
``BENCH_RATE`` per second. A greenlet resets Locust's statistics on ``mark``
(so its percentiles cover the measured window) and writes Locust's own figures
on ``stop``: its request count, failures, and p50/p99 as Locust computes them.
"""

from __future__ import annotations

import os
from typing import Any

import gevent
from locust import LoadTestShape, events
from locust.env import Environment

from bench.control import POLL_S, Control

CONTROL = Control(os.environ["BENCH_CONTROL"], os.environ["BENCH_NAME"])
USERS = int(os.environ["BENCH_USERS"])
RATE = float(os.environ["BENCH_RATE"])


class HarnessShape(LoadTestShape):
    """No users until the harness says ``go``; then all of them at the given spawn rate."""

    def tick(self) -> tuple[int, float] | None:
        """Locust asks this every second."""
        return (USERS, RATE) if CONTROL.is_set("go") else (0, 1)


def _result(environment: Environment) -> dict[str, Any]:
    total = environment.stats.total
    # Latency from the busiest entry: the snapshot, or the data frames (not WS status frames).
    main = max(environment.stats.entries.values(), key=lambda e: e.num_requests, default=total)
    timed = main.num_requests > 0
    return {
        "count": total.num_requests,
        "errors": total.num_failures,
        "p50_ms": main.get_response_time_percentile(0.5) if timed else None,
        "p99_ms": main.get_response_time_percentile(0.99) if timed else None,
    }


def _follow_steps(environment: Environment) -> None:
    while not CONTROL.is_set("mark"):
        gevent.sleep(POLL_S)
    environment.stats.reset_all()
    while not CONTROL.is_set("stop"):
        gevent.sleep(POLL_S)
    CONTROL.write_result(_result(environment))


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    gevent.spawn(_follow_steps, environment)
    CONTROL.ready()
