"""WS rows: messages per generator CPU-second, RSS per connection, and delivery accuracy.

Every trial holds N connections on /ws/market with the probe alongside, so one
trial gives a cost row and an accuracy row. The accuracy row also carries the
target's ground truth for the window (write time - publish stamp over every
connection, probe's included), so the gap is what the generator adds.
"""

from __future__ import annotations

import functools
from typing import Any

from bench import tools
from bench.plan import Plan
from bench.target import WS_MARKET, TargetProcess
from bench.trial import Child, Environment, Measurement, TrialSpec

Row = dict[str, Any]


def _own_figures(tool: str, m: Measurement) -> Row:
    """Frames received in the window and delivery latency, as the generator reports them."""
    result = m.result or {}
    if tool == "loadsvc":
        (endpoint,) = result["endpoints"]
        return {
            "frames": endpoint["count"],
            "p50_ms": endpoint["p50_ms"],
            "p99_ms": endpoint["p99_ms"],
            "result": result["result"],
            "loop_lag_p99_ms": result["loop_lag_p99_ms"],
            "missed": endpoint.get("missed"),
        }
    frames = result.get("frames", result.get("count"))
    return {"frames": frames, "p50_ms": result.get("p50_ms"), "p99_ms": result.get("p99_ms")}


def _sent_by_target(m: Measurement, connections: int) -> int:
    """Frames the target queued for the generator's connections in the window (a cross-check)."""
    published = (
        m.stats_end["frames_published"][WS_MARKET] - m.stats_start["frames_published"][WS_MARKET]
    )
    dropped = m.stats_end["frames_dropped"][WS_MARKET] - m.stats_start["frames_dropped"][WS_MARKET]
    return int(published * connections - dropped)


def _connected(want: int, target: TargetProcess) -> bool:
    return target.connections() >= want


def ws_rows(env: Environment, plan: Plan) -> list[Row]:
    """Each WS generator at each size, each with the probe alongside."""
    warmup, window = plan.ws_window
    rate = plan.ws_spawn_rate
    rows = []
    for n in plan.ws_connections:
        probe_n = plan.probe_connections(n)
        contenders: list[tuple[str, Child]] = [
            ("loadsvc", tools.loadsvc_ws(env.workdir, n, rate)),
            ("locust", tools.locust_ws(n, rate)),
            ("websockets + orjson, bare", tools.ws_bare(n, rate)),
        ]
        for tool, child in contenders:
            if not plan.runs(tool):
                continue

            label = f"ws-{tool.split()[0]}-{n}"
            spec = TrialSpec(
                label,
                child,
                functools.partial(_connected, n + probe_n),
                warmup,
                window,
                probe=tools.ws_probe(probe_n),
                ramp_timeout_s=30 + n / rate * 3,
            )
            m = env.run(spec)
            own = _own_figures(tool, m)
            frames = own["frames"] or 0
            probe = m.probe or {}
            truth = (m.truth or {}).get(WS_MARKET, {})
            rss_delta = m.rss_end - (m.rss_base or m.rss_end)
            rows.append(
                {
                    "tool": tool,
                    "connections": n,
                    **own,
                    "frames_per_s": frames / m.wall_s,
                    "sent_by_target": _sent_by_target(m, n),
                    "generator_cpu": m.cpu_s / m.wall_s,
                    "frames_per_cpu_s": frames / m.cpu_s if m.cpu_s > 0 else None,
                    "rss_base_mb": (m.rss_base or 0) / 2**20,
                    "rss_end_mb": m.rss_end / 2**20,
                    "kb_per_connection": rss_delta / n / 1024,
                    "probe_p50_ms": probe.get("p50_ms"),
                    "probe_p99_ms": probe.get("p99_ms"),
                    "probe_count": probe.get("count"),
                    "probe_connections": probe_n,
                    "truth_p50_ms": truth.get("p50_ms"),
                    "truth_p99_ms": truth.get("p99_ms"),
                    "truth_count": truth.get("count"),
                    "truth_buffered": truth.get("buffered"),
                    "other_load": m.other_load,
                }
            )
    return rows
