"""How big and how long: the full benchmark, the quick one, and the smoke test's toy sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """Sizes and windows of one benchmark run."""

    name: str
    throughput_users: int  # REST users (and wrk connections) for requests per CPU-second
    throughput_window: tuple[float, float]  # (warm-up, measured) seconds
    accuracy_users: tuple[int, ...]  # REST users on the 50 ms endpoint
    accuracy_window: tuple[float, float]
    ws_connections: tuple[int, ...]
    ws_window: tuple[float, float]
    ws_spawn_rate: int = 1000  # connections opened per second while ramping up
    # The WS probe's connections per generator connection (at least 10): each sits at a
    # random place in the target's fan-out order, and the probe's p99 is only as good as
    # the spread of places it samples (see clients/ws_probe.py).
    probe_share: float = 0.05
    scrape_rounds: int = 50
    tools: tuple[
        str, ...
    ] = ()  # only generators whose name starts with one of these (all if empty)

    def probe_connections(self, connections: int) -> int:
        """How many connections the WS probe holds next to ``connections``."""
        return max(min(10, connections), round(connections * self.probe_share))

    def runs(self, tool: str) -> bool:
        """Whether this plan includes the generator called ``tool``."""
        return not self.tools or any(tool.lower().startswith(t.lower()) for t in self.tools)


FULL = Plan(
    name="full",
    throughput_users=200,
    throughput_window=(3.0, 10.0),
    accuracy_users=(50, 200, 500),
    # The REST probe makes ~10 requests a second; its p99 needs a few hundred of them.
    accuracy_window=(3.0, 25.0),
    ws_connections=(500, 2000, 5000),
    ws_window=(3.0, 15.0),
)
QUICK = Plan(
    name="quick",
    throughput_users=200,
    throughput_window=(2.0, 5.0),
    accuracy_users=(500,),
    accuracy_window=(2.0, 10.0),
    ws_connections=(2000,),
    ws_window=(2.0, 6.0),
)
SMOKE = Plan(
    name="smoke",
    throughput_users=4,
    throughput_window=(0.3, 1.0),
    accuracy_users=(4,),
    accuracy_window=(0.3, 1.0),
    ws_connections=(8,),
    ws_window=(0.5, 1.5),
    ws_spawn_rate=100,
    probe_share=0.25,
    scrape_rounds=3,
)
PLANS = {p.name: p for p in (FULL, QUICK, SMOKE)}
