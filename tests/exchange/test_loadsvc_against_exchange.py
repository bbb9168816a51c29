"""loadsvc soaks the exchange with YAML alone (examples/exchange.yaml), judged by the
exchange's own ground truth: login with expiring tokens, per-user symbols, subscribe/ack,
heartbeats, nested msgpack frames with RFC 3339 stamps and per-symbol sequences, REST with
429s. Then the exchange misbehaves (drops, late frames) and the verdict must say so."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunResult, ScenarioRun
from loadsvc.runstats import EndpointSummary
from loadsvc.users import Target
from tests.adversarial.runs import FAST
from tests.support.exchange import Exchange, ExchangeSettings, running_exchange
from tests.support.processes import ROOT
from tests.support.timing import scaled, wait_for_async

EXAMPLE = ROOT / "examples" / "exchange.yaml"
SCENARIO = "exchange_soak"
PASSWORD = "Xch-9vQ2-DISTINCTIVE"  # grep-able in any output it must never reach
TRADERS = tuple((f"trader{i:02d}", PASSWORD) for i in range(1, 13))  # the example's rows
USERS = 8  # weights 2:1:1 -> 4 streams, 2 quote pollers, 2 order bots
STREAMS = 4
# Tokens live 2 s (renewed every second or so), pings every second (1 s to answer), and
# each trader may send 3 REST requests a second: the example's order bots send 5.
SETTINGS = ExchangeSettings(
    users=TRADERS,
    token_ttl_s=2.0,
    heartbeat_s=1.0,
    pong_deadline_s=1.0,
    rate_limit=3,
    rate_window_s=1.0,
)
TRUTH_MARGIN_MS = 5.0


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example reads its password from EXCHANGE_PASSWORD (when the config is loaded)."""
    monkeypatch.setenv("EXCHANGE_PASSWORD", PASSWORD)
    yield


def example_spec(users: int = USERS, duration: str = "60s") -> ScenarioSpec:
    """The example's scenario, as shipped but for its size and length."""
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text("utf-8"))
    scenario = raw["scenarios"][SCENARIO]
    scenario["shape"] = {"kind": "constant", "users": users, "duration": duration}
    return parse_config(yaml.safe_dump(raw), str(EXAMPLE)).scenario(SCENARIO)


def by_endpoint(endpoints: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Summary JSON endpoints by name."""
    return {e["endpoint"]: e for e in endpoints}


def endpoint(result: RunResult, name: str) -> EndpointSummary:
    """The summary of endpoint ``name`` of an in-process run."""
    (found,) = [e for e in result.endpoints if e.endpoint == name]
    return found


def truth_gaps(exchange: Exchange) -> int:
    """Sequence numbers missing within each connection's symbols: what clients can see."""
    return sum(s.gaps() for c in exchange.truth.connections.values() for s in c.symbols.values())


def truth_written(exchange: Exchange) -> int:
    """Data frames written to every connection."""
    return sum(len(s.seqs) for c in exchange.truth.connections.values() for s in c.symbols.values())


async def test_the_example_validates_and_names_its_missing_secret() -> None:
    """`loadsvc validate examples/exchange.yaml` passes with EXCHANGE_PASSWORD set and exits
    2 naming the variable (never a value) without it."""
    env = {k: v for k, v in os.environ.items() if k != "EXCHANGE_PASSWORD"}
    codes, outputs = [], []
    for extra in ({"EXCHANGE_PASSWORD": PASSWORD}, {}):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadsvc", "validate", str(EXAMPLE), cwd=ROOT,
            env={**env, **extra}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), scaled(30))
        codes.append(proc.returncode)
        outputs.append(out.decode())
    assert codes == [0, 2], outputs
    assert "environment variable EXCHANGE_PASSWORD is not set" in outputs[1]


def _within(fragment: Any, doc: Any) -> bool:
    """``fragment`` says nothing ``doc`` does not: mappings by key, list items each in ``doc``."""
    if isinstance(fragment, dict):
        return isinstance(doc, dict) and all(
            k in doc and _within(v, doc[k]) for k, v in fragment.items()
        )
    if isinstance(fragment, list):
        return isinstance(doc, list) and all(any(_within(f, d) for d in doc) for f in fragment)
    return bool(fragment == doc)


def _anywhere(fragment: Any, doc: Any) -> bool:
    """``fragment`` is within ``doc`` or within one of its parts."""
    if _within(fragment, doc):
        return True
    parts = doc.values() if isinstance(doc, dict) else doc if isinstance(doc, list) else ()
    return any(_anywhere(fragment, part) for part in parts)


def test_the_readme_walkthrough_quotes_the_example() -> None:
    """Every YAML block of README "Pointing it at your backend" is a part of
    examples/exchange.yaml as shipped: the walk-through cannot drift from the tested file."""
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## Pointing it at your backend", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```yaml\n")[1:]]
    example = yaml.safe_load(EXAMPLE.read_text("utf-8"))
    assert len(blocks) >= 5
    for block in blocks:
        fragment = yaml.safe_load(textwrap.dedent(block))
        assert fragment and _anywhere(fragment, example), block


async def test_a_yaml_soak_of_the_exchange_agrees_with_its_ground_truth(tmp_path: Path) -> None:
    """`loadsvc run` of the example (a child process, the password from the environment):
    latency p50/p99 within 5 ms of the exchange's truth, no false gaps, no 401 or failed
    upgrade across token renewals, heartbeats answered, 429s counted and never hammered,
    PASSED; neither the password nor any token in its output."""
    summary, report = tmp_path / "summary.json", tmp_path / "report.html"
    async with running_exchange(SETTINGS) as ex:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadsvc", "--log-json", "--log-level", "debug", "run",
            SCENARIO, "--config", str(EXAMPLE), "--target", ex.url, "--users", str(USERS),
            "--duration", "10s", "--summary-json", str(summary), "--report-html", str(report),
            "--tick", "0.1", cwd=ROOT, env={**os.environ, "EXCHANGE_PASSWORD": PASSWORD},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(proc.communicate(), scaled(60))
        exchange = ex.exchange
        counts, latency = exchange.counts(), exchange.truth.latency_ms()
        issued = exchange.tokens.issued()
        gaps, written = truth_gaps(exchange), truth_written(exchange)
        closed = [c.closed for c in exchange.truth.connections.values()]
    assert proc.returncode == 0, stderr.decode()[-3000:]
    doc = json.loads(summary.read_text("utf-8"))
    assert doc["result"] == "passed", doc["reasons"]
    eps = by_endpoint(doc["endpoints"])
    assert set(eps) == {"/stream", "/v2/quotes", "/v2/orders", "login"}

    # Delivery latency: loadsvc's arrival minus meta.ts against the exchange's write minus stamp.
    stream = eps["/stream"]
    assert stream["count"] > 10 * STREAMS and latency["count"] >= stream["count"]
    for q in ("p50_ms", "p99_ms"):
        assert abs(stream[q] - latency[q]) <= TRUTH_MARGIN_MS, (q, stream[q], latency)
    assert stream["arrival_clock"] == "kernel"
    # Interleaved symbols are not gaps: nothing missed, nothing reordered, every frame valid.
    assert gaps == 0 and stream["missed"] == 0
    assert stream["sequence_anomalies"] == {} or not any(stream["sequence_anomalies"].values())
    assert stream["outcomes"].get("invalid", 0) == 0 and stream["errors"] == 0
    assert written - STREAMS * 3 <= stream["count"] <= written  # up to the frames in flight

    # Logins: every one the exchange saw was timed by loadsvc; tokens renewed before expiry.
    assert eps["login"]["count"] == counts["logins"] >= 3 * USERS, (eps["login"], counts)
    assert counts["login_rejections"] == 0 and counts["expired_token_requests"] == 0
    assert counts["token_rejections"] == {} and counts.get("http_401", 0) == 0
    # Every stream subscribed once, acknowledged, kept by its pongs: no upgrade failed, no 4408.
    assert stream["connects"] == STREAMS == counts["http_101"] == counts["acks"]
    assert stream["connection_errors"] == 0 and closed == [None] * STREAMS
    assert counts["pings"] >= 5 * STREAMS and counts.get("heartbeat_timeouts", 0) == 0
    assert stream["status_messages"] >= counts["acks"] + counts["pings"] - STREAMS

    # REST: quotes never refused; the bots refused and honouring it (no hammering).
    quotes, orders = eps["/v2/quotes"], eps["/v2/orders"]
    assert quotes["errors"] == 0 and quotes["count"] >= 2 * 8
    assert orders["outcomes"].get("http_error", 0) == 0 and orders["outcomes"]["ok"] > 0
    assert orders["rate_limited"] == counts["rate_limited"] == counts["http_429"] > 0
    assert counts["hammering"] == 0
    assert orders["rate_limit_waits"] == orders["rate_limited"]

    outputs = {"stdout": stdout.decode(), "stderr": stderr.decode(), "summary": summary.read_text()}
    outputs["report"] = report.read_text("utf-8")
    assert issued
    for name, text in outputs.items():
        assert PASSWORD not in text, name
        assert not [t for t in issued if t in text], name


async def run_until_flushed(
    spec: ScenarioSpec, settings: ExchangeSettings
) -> tuple[RunResult, Exchange]:
    """Run ``spec`` in this process against an exchange with ``settings``; once every stream
    has had trades, ring the closing bell, wait until loadsvc counted every frame written
    (so counts compare exactly), and stop the run."""
    registry = CollectorRegistry()
    async with running_exchange(settings) as ex:
        exchange = ex.exchange
        run = ScenarioRun(spec, Target(ex.url), Recorder(create_metrics(registry)), FAST)
        task = asyncio.create_task(asyncio.wait_for(run.execute(), scaled(60)))

        def traded() -> bool:
            conns = list(exchange.truth.connections.values())
            per_conn = [sum(len(s.seqs) for s in c.symbols.values()) for c in conns]
            return len(conns) == STREAMS and min(per_conn) >= 60

        await wait_for_async(traded, 20, "trades on every stream")
        exchange.halt()
        labels = {"scenario": SCENARIO, "endpoint": "/stream"}

        def counted() -> bool:
            seen = sum(
                registry.get_sample_value("loadsvc_ws_messages_total", {**labels, "outcome": o})
                or 0.0
                for o in ("ok", "invalid", "duplicate")
            )
            return seen == truth_written(exchange)

        await wait_for_async(counted, 10, "loadsvc counting every frame written")
        run.stop()
        return await task, exchange


async def test_dropped_trades_are_missed_exactly_and_fail_the_run() -> None:
    """The exchange skips every 3rd trade of each symbol per connection: loadsvc's missed
    count is exactly the truth's gaps (and the seqs it dropped), and the run FAILS on
    ws_missed_ratio, nothing else."""
    settings = ExchangeSettings(
        users=TRADERS, token_ttl_s=2.0, heartbeat_s=1.0, pong_deadline_s=1.0, drop_every=3
    )
    result, exchange = await run_until_flushed(example_spec(), settings)
    stream = endpoint(result, "/stream")
    gaps = truth_gaps(exchange)
    dropped = 0
    for conn in exchange.truth.connections.values():
        for record in conn.symbols.values():
            dropped += sum(record.seqs[0] < seq < record.seqs[-1] for seq in record.dropped)
    assert gaps > STREAMS * 10
    assert stream.missed == gaps == dropped
    assert stream.count == truth_written(exchange)
    assert result.result == "failed"
    breached = {(j.endpoint, j.name) for j in result.verdict.breached()}
    assert breached == {("/stream", "ws_missed_ratio")}, result.reasons


async def test_late_frames_breach_the_latency_limit_measured_as_the_truth_has_them() -> None:
    """The exchange holds every frame 300 ms after its stamp: loadsvc's p50 and p99 stay
    within 5 ms of the truth's, and the run FAILS on ws_delivery_latency, nothing else."""
    settings = ExchangeSettings(
        users=TRADERS, token_ttl_s=2.0, heartbeat_s=1.0, pong_deadline_s=1.0, delay_ms=300.0
    )
    registry = CollectorRegistry()
    async with running_exchange(settings) as ex:
        run = ScenarioRun(
            example_spec(duration="5s"), Target(ex.url), Recorder(create_metrics(registry)), FAST
        )
        result = await asyncio.wait_for(run.execute(), scaled(60))
        truth = ex.exchange.truth.latency_ms()
    stream = endpoint(result, "/stream")
    assert stream.p50_s is not None and stream.p99_s is not None
    assert truth["p50_ms"] is not None and truth["p99_ms"] is not None
    assert truth["p50_ms"] >= 300.0
    assert abs(stream.p50_s * 1000 - truth["p50_ms"]) <= TRUTH_MARGIN_MS, (stream, truth)
    assert abs(stream.p99_s * 1000 - truth["p99_ms"]) <= TRUTH_MARGIN_MS, (stream, truth)
    assert result.result == "failed"
    breached = {(j.endpoint, j.name) for j in result.verdict.breached()}
    assert breached == {("/stream", "ws_delivery_latency")}, result.reasons
