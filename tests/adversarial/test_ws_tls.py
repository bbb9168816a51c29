"""wss against a private CA: a certificate failure is reason 'tls', named; a CA file or opt-out connects."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.runstats import EndpointSummary
from loadsvc.tls import client_context
from loadsvc.users import Target
from tests.adversarial.test_ws_frames import errors, stream
from tests.support.wsservers import frames_then_hold, market_frame, now, raw_ws_server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the server's and, as a CA file, the client's)."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=loadsvc-test",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    return ctx


async def run_against(
    certificate: tuple[Path, Path], metrics: Metrics, tls: ssl.SSLContext | None
) -> EndpointSummary:
    """Two stream users against a wss server with the test certificate."""
    behaviour = frames_then_hold(lambda c: [market_frame(i, now()) for i in range(1, 4)])
    async with raw_ws_server(behaviour, tls=server_context(certificate)) as server:
        target = Target(server.url, tls=tls)
        result = await ScenarioRun(
            stream(users=2), target, Recorder(metrics), RunOptions(tick_s=0.1, seed=1)
        ).execute()
    (ws,) = result.endpoints
    return ws


async def test_untrusted_certificate_is_reason_tls_and_named(
    certificate: tuple[Path, Path], metrics: Metrics, registry: CollectorRegistry
) -> None:
    """The default (verifying) context refuses a self-signed server: 'tls', with the problem."""
    ws = await run_against(certificate, metrics, None)
    # Each user's attempts all fail (how many depends on the jittered backoff): every one tls.
    refused = errors(registry, "tls")
    assert ws.connects == 0 and refused >= 2 and errors(registry, "error") == 0
    ((reason, detail, count),) = ws.diagnostics
    assert reason == "tls" and count == refused == ws.connection_errors
    assert detail.startswith("certificate verify failed: self") and "signed" in detail


async def test_ca_file_trusts_a_private_ca(
    certificate: tuple[Path, Path], metrics: Metrics
) -> None:
    """With the certificate as CA file the run's one context verifies and connects."""
    ws = await run_against(certificate, metrics, client_context(ca_file=str(certificate[0])))
    assert ws.connects == 2 and ws.connection_errors == 0 and ws.outcome("ok") == 6


async def test_verification_can_be_turned_off_explicitly(
    certificate: tuple[Path, Path], metrics: Metrics
) -> None:
    """verify=False (staging opt-out) connects to the self-signed server."""
    ws = await run_against(certificate, metrics, client_context(verify=False))
    assert ws.connects == 2 and ws.outcome("ok") == 6
