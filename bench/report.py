"""What the tables say: the measured rows of a run turned into titled tables."""

from __future__ import annotations

from typing import Any

from bench.table import Table

Results = dict[str, Any]
DISTURBED = 0.10  # another process took more than this share of the generator's core


def num(value: float | None, digits: int = 0) -> str:
    """A number with thousands separators, or '-'."""
    return "-" if value is None else f"{value:,.{digits}f}"


def ms(value: float | None) -> str:
    """Milliseconds with one decimal, or '-'."""
    return "-" if value is None else f"{value:.1f}"


def delta(own: float | None, probe: float | None) -> str:
    """The generator's figure minus the probe's, signed."""
    return "-" if own is None or probe is None else f"{own - probe:+.1f}"


def _flag(name: str, row: dict[str, Any]) -> str:
    return name + (" *" if row.get("other_load", 0.0) > DISTURBED else "")


NOTE_DISTURBED = (
    "* processes outside the trial used more than 10 % of a core in this window: re-run to confirm."
)


def rest_throughput_table(rows: list[dict[str, Any]]) -> Table:
    """Requests per generator CPU-second."""
    locust = next((r["req_per_cpu_s"] for r in rows if r["tool"].startswith("Locust")), None)
    body = [
        [
            _flag(r["tool"], r),
            str(r["users"]),
            num(r["req_per_s"]),
            f"{r['generator_cpu'] * 100:.0f} %",
            num(r["req_per_cpu_s"]),
            f"{r['req_per_cpu_s'] / locust:.2f}x" if locust and r["req_per_cpu_s"] else "-",
        ]
        for r in rows
    ]
    return Table(
        "REST throughput: GET /api/market/snapshot (7.2 KB JSON), no think time",
        ["generator", "users", "req/s", "generator CPU", "req per CPU-s", "vs Locust"],
        body,
        "req = requests the target served in the window; CPU = the generator process's user+system time. "
        + NOTE_DISTURBED,
    )


def rest_accuracy_table(rows: list[dict[str, Any]]) -> Table:
    """p50/p99 of loadsvc and Locust next to the probe's, on a true 50 ms endpoint."""
    body = []
    for r in rows:
        for tool, name in (("loadsvc", "loadsvc"), ("locust", "Locust FastHttpUser")):
            if tool not in r:
                continue
            t = r[tool]
            result = t.get("result", "-")
            lag = t.get("loop_lag_p99_ms")
            body.append(
                [
                    _flag(name, t),
                    str(r["users"]),
                    num(t["req_per_s"]),
                    f"{t['generator_cpu'] * 100:.0f} %",
                    ms(t["p50_ms"]),
                    ms(t["p99_ms"]),
                    ms(t["probe_p50_ms"]),
                    ms(t["probe_p99_ms"]),
                    delta(t["p99_ms"], t["probe_p99_ms"]),
                    "-" if lag is None else f"{result}, lag {ms(lag)}",
                ]
            )
    return Table(
        "REST accuracy: true latency 50 ms (fault latency_ms 50 on the snapshot), no think time",
        [
            "generator",
            "users",
            "req/s",
            "generator CPU",
            "p50 ms",
            "p99 ms",
            "probe p50",
            "probe p99",
            "p99 - probe",
            "loadsvc verdict, loop lag p99 ms",
        ],
        body,
        "probe: its own process on the target's core, one connection, ~10 req/s, "
        "sampled over the same window. " + NOTE_DISTURBED,
    )


def ws_cost_table(rows: list[dict[str, Any]]) -> Table:
    """Frames per generator CPU-second and RSS per connection."""
    body = [
        [
            _flag(r["tool"], r),
            num(r["connections"]),
            num(r["frames_per_s"]),
            f"{r['generator_cpu'] * 100:.0f} %",
            num(r["frames_per_cpu_s"]),
            num(r["kb_per_connection"], 1),
        ]
        for r in rows
    ]
    return Table(
        "WS cost: /ws/market, ~7 KB JSON frames, 2 per second per connection",
        [
            "generator",
            "connections",
            "frames/s",
            "generator CPU",
            "frames per CPU-s",
            "KB RSS per connection",
        ],
        body,
        "loadsvc validates required keys, stamps and sequence numbers, and records metrics; "
        "Locust reports each frame as a request event; the bare client parses with orjson. "
        "KB per connection = (RSS holding N connections - RSS before connecting) / N. "
        + NOTE_DISTURBED,
    )


def ws_accuracy_table(rows: list[dict[str, Any]]) -> Table:
    """Delivery latency of each generator next to the target's ground truth and the probe's."""
    body = []
    for r in rows:
        lag = r.get("loop_lag_p99_ms")
        verdict = "-" if lag is None else f"{r['result']}, lag {ms(lag)}"
        body.append(
            [
                _flag(r["tool"], r),
                num(r["connections"]),
                ms(r["p50_ms"]),
                ms(r["p99_ms"]),
                ms(r.get("truth_p50_ms")),
                ms(r.get("truth_p99_ms")),
                delta(r["p50_ms"], r.get("truth_p50_ms")),
                delta(r["p99_ms"], r.get("truth_p99_ms")),
                ms(r["probe_p99_ms"]),
                delta(r["p99_ms"], r["probe_p99_ms"]),
                verdict,
            ]
        )
    return Table(
        "WS accuracy: delivery latency (receive time - published_at)",
        [
            "generator",
            "connections",
            "p50 ms",
            "p99 ms",
            "truth p50",
            "truth p99",
            "p50 - truth",
            "p99 - truth",
            "probe p99",
            "p99 - probe",
            "loadsvc verdict, loop lag p99 ms",
        ],
        body,
        "truth: the target's own record, for every frame and connection in the window, of when it "
        "wrote the frame to the socket minus the frame's published_at (GET /admin/stats/delivery, "
        "0.1 ms bins); the gap is what the generator adds (its queueing, parsing and clock reads, "
        "and the loopback hop). probe: its own process on the target's core, holding 5 % as many "
        "connections as the generator, idle between frames. " + NOTE_DISTURBED,
    )


def scrape_table(scrape: dict[str, Any]) -> Table:
    """Time and size of /metrics."""
    return Table(
        "Scrape cost: generate_latest() with every default scenario's series observed",
        ["scenarios", "series", "bytes", "median ms", "max ms"],
        [
            [
                str(scrape["scenarios"]),
                num(scrape["series"]),
                num(scrape["bytes"]),
                ms(scrape["median_ms"]),
                ms(scrape["max_ms"]),
            ]
        ],
    )


def tables(results: Results) -> list[Table]:
    """Every table the results have data for, in order."""
    out = []
    if results.get("rest_throughput"):
        out.append(rest_throughput_table(results["rest_throughput"]))
    if results.get("rest_accuracy"):
        out.append(rest_accuracy_table(results["rest_accuracy"]))
    if results.get("ws"):
        out.append(ws_cost_table(results["ws"]))
        out.append(ws_accuracy_table(results["ws"]))
    if results.get("scrape"):
        out.append(scrape_table(results["scrape"]))
    return out
