"""WS delivery latency against the target's ground truth: kernel arrival times beside the loop's clock.

``python bench/ws_arrival.py [--connections 2000,5000] [--passes 2] [--window 3,10] [--tls]``

Each trial is a fresh reference target on one core and loadsvc (the engine as
``loadsvc run`` drives it, ``bench/clients/loadsvc_gen.py``) alone on the other,
holding N ``market_stream`` connections (opened at 1,000/s). Trials alternate the
generator's arrival clock (``BENCH_ARRIVAL_CLOCK``: the kernel's receive stamps,
or the loop's clock as before), the order reversed on every other pass, so both
are measured in one sitting on a shared machine. Each row: loadsvc's own p50/p99
over the window, the target's ground truth over the same window (``GET
/admin/stats/delivery``: when it wrote each frame to each socket minus its stamp),
the gap, the clock the run's summary says timed the endpoint, its verdict and loop
lag. A trial lasts about ramp + warm-up + window + 5 s (under 60 s at 5,000).

``--tls``: wss:// through a real TLS proxy, nginx (``tests/support/nginx.py``) on
the target's core in front of the target, its certificate from a private CA the
generator trusts; the clocks are then stamped TLS (``loadsvc/users/stamped_tls.py``)
and uvloop's TLS transport. The truth is still the target's write to its socket
(to nginx): the gap includes nginx's relay (read, encrypt, send), on the target's
core. The probe's connections go through nginx too: its p99 beside loadsvc's says
how much of a gap is the relay's and the machine's rather than the generator's.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme

from bench import tools
from bench.table import Table
from bench.target import WS_MARKET, TargetProcess
from bench.trial import Child, Environment, Front, TrialSpec
from tests.support.nginx import nginx_tls_front

SPAWN_RATE = 1000
GOAL_MS = 5.0  # the bound on |loadsvc - truth| at p50 and p99


def _with_clock(child: Child, clock: str) -> Child:
    return Child(child.name, child.command, {**child.env, "BENCH_ARRIVAL_CLOCK": clock})


def tcp_counters() -> dict[str, int]:
    """The machine's TCP counters (/proc/net/snmp and netstat): retransmissions, zero windows."""
    out: dict[str, int] = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = Path(path).read_text().splitlines()
        for head, values in zip(lines[::2], lines[1::2], strict=False):
            prefix = head.split(":", 1)[0]
            for name, value in zip(head.split()[1:], values.split()[1:], strict=False):
                if value.lstrip("-").isdigit():
                    out[f"{prefix}.{name}"] = int(value)
    return out


def tls_front(ca_file: Path, core: int, connections: int) -> Front:
    """nginx terminating TLS before each trial's target, pinned to ``core``; its certificate
    from the CA whose certificate is written to ``ca_file`` (the generator trusts it)."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(ca_file))

    @contextlib.contextmanager
    def front(target: TargetProcess, trial_dir: Path) -> Iterator[str]:
        directory = trial_dir / "nginx"
        with nginx_tls_front(target.url, directory, connections, core=core, ca=ca) as nginx:
            yield nginx.url

    return front


def trial(
    env: Environment,
    n: int,
    clock: str,
    warmup: float,
    window: float,
    ca_file: Path | None = None,
) -> dict[str, Any]:
    """One trial: loadsvc at ``n`` connections on ``clock``; its figures beside the truth.

    ``ca_file``: the environment has a TLS front (:func:`tls_front`) whose CA this is.
    """
    generator = _with_clock(tools.loadsvc_ws(env.workdir, n, SPAWN_RATE), clock)
    probe_n = max(10, n // 20)
    probe = tools.ws_probe(probe_n)
    if ca_file:  # the generator and the probe trust the front's CA
        tls_env = {"BENCH_CA_FILE": str(ca_file)}
        generator = Child(generator.name, generator.command, {**generator.env, **tls_env})
        probe = Child(probe.name, probe.command, {**probe.env, **tls_env})
    spec = TrialSpec(
        f"arrival-{clock}-{n}",
        generator,
        lambda target: target.connections() >= n + probe_n,
        warmup,
        window,
        probe=probe,
        ramp_timeout_s=30 + n / SPAWN_RATE * 3,
    )
    before = tcp_counters()
    m = env.run(spec)
    after = tcp_counters()
    result = m.result or {}
    (endpoint,) = result.get("endpoints") or [{}]
    truth = (m.truth or {}).get(WS_MARKET, {})
    row: dict[str, Any] = {
        "connections": n,
        "probe_connections": probe_n,  # the truth counts their frames too
        "clock": clock,
        "tls": ca_file is not None,
        "reported_clock": endpoint.get("arrival_clock"),
        "reported_target": result.get("target"),  # https:// through the TLS front
        "frames": endpoint.get("count"),
        "p50_ms": endpoint.get("p50_ms"),
        "p99_ms": endpoint.get("p99_ms"),
        "truth_p50_ms": truth.get("p50_ms"),
        "truth_p99_ms": truth.get("p99_ms"),
        "truth_count": truth.get("count"),
        # The independent probe (bench/README.md): an idle client on the target's core.
        "probe_p50_ms": (m.probe or {}).get("p50_ms"),
        "probe_p99_ms": (m.probe or {}).get("p99_ms"),
        "result": result.get("result"),
        "loop_lag_p99_ms": result.get("loop_lag_p99_ms"),
        "shared": result.get("frames_sharing_a_read"),
        "unstamped": result.get("unstamped_reads"),
        "truth_buffered": truth.get("buffered"),
        # The whole machine's, over the trial (other work included): data resent on loopback
        # arrives an RTO (>= 200 ms) after the target wrote it, which its truth cannot see.
        "retransmits": after.get("Tcp.RetransSegs", 0) - before.get("Tcp.RetransSegs", 0),
        "generator_cpu": m.cpu_s / m.wall_s if m.wall_s else None,
        "other_load": m.other_load,
    }
    for q in ("p50", "p99"):
        own, true = row[f"{q}_ms"], row[f"truth_{q}_ms"]
        row[f"{q}_gap_ms"] = None if own is None or true is None else own - true
    return row


def _ms(v: float | None, sign: bool = False) -> str:
    return "-" if v is None else (f"{v:+.1f}" if sign else f"{v:.1f}")


def _within(row: dict[str, Any]) -> str:
    gaps = (row["p50_gap_ms"], row["p99_gap_ms"])
    if None in gaps or not row["frames"] or not row["truth_count"]:
        return "no data"  # never "yes" over nothing measured
    return "yes" if all(abs(g) <= GOAL_MS for g in gaps) else "no"


def table(rows: list[dict[str, Any]], when: str) -> Table:
    """The rows side by side, with the gap to the truth."""
    over = " over TLS (wss:// through nginx)" if any(r.get("tls") for r in rows) else ""
    return Table(
        f"WS delivery latency (receive - published_at) against the target's ground truth{over}, {when}",
        [
            "clock",
            "connections",
            "frames",
            "p50 ms",
            "p99 ms",
            "truth p50",
            "truth p99",
            "p50 - truth",
            "p99 - truth",
            "probe p50",
            "probe p99",
            "within 5 ms",
            "shared reads",
            "unstamped reads",
            "truth buffered",
            "TCP resent",
            "verdict, loop lag p99 ms",
            "gen CPU",
        ],
        [
            [
                f"{r['clock']} (summary: {r['reported_clock']}){' *' if r['other_load'] > 0.1 else ''}",
                f"{r['connections']:,}",
                f"{r['frames'] or 0:,}",
                _ms(r["p50_ms"]),
                _ms(r["p99_ms"]),
                _ms(r["truth_p50_ms"]),
                _ms(r["truth_p99_ms"]),
                _ms(r["p50_gap_ms"], True),
                _ms(r["p99_gap_ms"], True),
                _ms(r.get("probe_p50_ms")),
                _ms(r["probe_p99_ms"]),
                _within(r),
                "-" if r["shared"] is None else f"{r['shared']:,}",
                "-" if r["unstamped"] is None else f"{r['unstamped']:,}",
                "-" if r["truth_buffered"] is None else f"{r['truth_buffered']:,}",
                f"{r['retransmits']:,}",
                f"{r['result']}, lag {_ms(r['loop_lag_p99_ms'])}",
                "-" if r["generator_cpu"] is None else f"{r['generator_cpu']:.0%}",
            ]
            for r in rows
        ],
        note=(
            "clock: what the generator was asked to use (summary: what its run reported). shared "
            "reads: frames of the window that came in one read with a later frame, so were timed "
            "by its arrival (the loop reached the socket later than the next frame). unstamped "
            "reads: reads of kernel-clock connections timed by the loop (no stamp). truth "
            "buffered: frames the target's transport still held after writing (its truth is then "
            "a lower bound). TCP resent: segments the whole machine retransmitted during the trial "
            "(a resent frame arrives an RTO, >= 200 ms, after the target's truth says). Trials "
            "alternate the clocks. * processes outside the trial used more than 10 % of a core "
            "in this window. The target is single-core: at 5,000 its own fan-out takes hundreds "
            "of ms, which the truth includes."
        ),
    )


def main() -> None:
    """Run the trials, alternating the clocks; print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", default="2000,5000")
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--window", default="3,10", help="warm-up,window seconds")
    p.add_argument("--clocks", default="loop,kernel", help="the clocks to alternate")
    p.add_argument("--tls", action="store_true", help="wss:// through nginx before the target")
    args = p.parse_args()
    sizes = [int(x) for x in args.connections.split(",")]
    warmup, window = (float(x) for x in args.window.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="ws_arrival.") as tmp:
        env = Environment(Path(tmp))
        ca_file = None
        if args.tls:
            ca_file = Path(tmp) / "ca.pem"
            # Each client takes two of nginx's connections (its own, the one to the target), and
            # reconnects hold more while the old ones close: at twice that, nginx never reuses
            # ("worker_connections are not enough"), which drops connections mid-handshake.
            env.front = tls_front(ca_file, env.target_core, 4 * max(sizes) + 1024)
        for k in range(args.passes):
            for n in sizes:
                clocks = args.clocks.split(",")
                order = clocks if k % 2 == 0 else clocks[::-1]
                for clock in order:
                    try:
                        rows.append(trial(env, n, clock, warmup, window, ca_file))
                    except (OSError, RuntimeError) as exc:  # a starved target: say so, go on
                        print(f"{clock} at {n:,}: trial failed ({exc!r})", flush=True)
                        continue
                    print(" | ".join(table(rows[-1:], "").rows[0]), flush=True)
    rows.sort(key=lambda r: (r["connections"], r["clock"]))
    print(table(rows, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())).text())


if __name__ == "__main__":
    main()
