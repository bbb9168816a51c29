"""REST rows: requests per generator CPU-second, and latency accuracy on a 50 ms endpoint."""

from __future__ import annotations

from typing import Any

from bench import tools
from bench.plan import Plan
from bench.target import SNAPSHOT, TargetProcess
from bench.trial import Child, Environment, Measurement, TrialSpec

TRUE_LATENCY_MS = 50
Row = dict[str, Any]


def _serving(target: TargetProcess) -> bool:
    return target.requests_served() > 0


def _gen_share(m: Measurement) -> float:
    return m.cpu_s / m.wall_s if m.wall_s > 0 else 0.0


def rest_throughput(env: Environment, plan: Plan) -> list[Row]:
    """Each generator against the snapshot at full speed: served requests per CPU-second."""
    users = plan.throughput_users
    warmup, window = plan.throughput_window
    contenders: list[tuple[str, str, Child]] = [
        ("loadsvc", "loadsvc", tools.loadsvc_rest(env.workdir, users, validate=False)),
        ("loadsvc-validating", "loadsvc, validating keys",
         tools.loadsvc_rest(env.workdir, users, validate=True)),
        ("locust", "Locust FastHttpUser", tools.locust_rest(users)),
        ("aiohttp", "aiohttp + uvloop, bare", tools.aiohttp_loop(users)),
        ("wrk", "wrk (ceiling)", tools.wrk(users, warmup + window + 10)),
    ]  # fmt: skip
    rows = []
    for key, tool, child in contenders:
        if not plan.runs(tool):
            continue
        m = env.run(TrialSpec(f"rest-throughput-{key}", child, _serving, warmup, window))
        rows.append(
            {
                "tool": tool,
                "users": users,
                "req_per_s": m.served / m.wall_s,
                "generator_cpu": _gen_share(m),
                "req_per_cpu_s": m.served_per_cpu_s,
                "other_load": m.other_load,
            }
        )
    return rows


def _latencies(tool: str, m: Measurement) -> Row:
    result = m.result or {}
    if tool == "loadsvc":
        (endpoint,) = result["endpoints"]
        own = {
            "p50_ms": endpoint["p50_ms"],
            "p99_ms": endpoint["p99_ms"],
            "result": result["result"],
            "loop_lag_p99_ms": result["loop_lag_p99_ms"],
        }
    else:
        own = {"p50_ms": result.get("p50_ms"), "p99_ms": result.get("p99_ms")}
    probe = m.probe or {}
    return {
        **own,
        "req_per_s": m.served / m.wall_s,
        "generator_cpu": _gen_share(m),
        "probe_p50_ms": probe.get("p50_ms"),
        "probe_p99_ms": probe.get("p99_ms"),
        "probe_count": probe.get("count"),
        "other_load": m.other_load,
    }


def rest_accuracy(env: Environment, plan: Plan) -> list[Row]:
    """loadsvc and Locust against a true 50 ms latency, each next to a probe of its own run."""
    warmup, window = plan.accuracy_window
    faults = {"latency_ms": {SNAPSHOT: TRUE_LATENCY_MS}}
    rows = []
    for users in plan.accuracy_users:
        row: Row = {"users": users}
        for tool, child in (
            ("loadsvc", tools.loadsvc_rest(env.workdir, users, validate=True)),
            ("locust", tools.locust_rest(users)),
        ):
            if not plan.runs(tool):
                continue
            spec = TrialSpec(
                f"rest-accuracy-{tool}-{users}",
                child,
                _serving,
                warmup,
                window,
                probe=tools.rest_probe(),
                faults=faults,
            )
            row[tool] = _latencies(tool, env.run(spec))
        rows.append(row)
    return rows
