"""REST users against an https server whose certificate comes from a private CA."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from loadsvc.tls import client_context
from tests.adversarial.runs import outcomes, rest_config, run_rest
from tests.support.rawserver import hold, read_request, serving

BODY = b'{"a": 1}'


@pytest.fixture(scope="module")
def private_ca() -> trustme.CA:
    """A private CA, as a staging backend often has."""
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(private_ca: trustme.CA) -> ssl.SSLContext:
    """The server's context: a certificate for localhost issued by the private CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    private_ca.issue_cert("localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(private_ca: trustme.CA, tmp_path: Path) -> Iterator[str]:
    """The private CA's certificate as a PEM file (what ``--ca-file`` names)."""
    path = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(path))
    yield str(path)


async def ok_script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request with a small valid JSON body."""
    while True:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + BODY)
        await writer.drain()


async def test_an_unknown_ca_is_outcome_tls_naming_the_certificate_problem(
    server_tls: ssl.SSLContext,
) -> None:
    """Without the private CA every request is outcome tls, and the diagnostic says why."""
    async with serving(ok_script, tls=server_tls) as server:
        result = await run_rest(server.url, rest_config())
    assert outcomes(result) == {"tls": 2}
    assert result.result == "failed"  # never generator_bound
    (endpoint,) = result.endpoints
    ((reason, detail, count),) = endpoint.diagnostics
    assert (reason, count) == ("tls", 2)
    assert detail.startswith("certificate verify failed: ")
    assert "issuer" in detail  # "unable to get local issuer certificate"


async def test_the_run_context_with_the_ca_file_verifies_the_server(
    server_tls: ssl.SSLContext, ca_file: str
) -> None:
    """With the run's context built from the CA file, requests over TLS are ok."""
    async with serving(ok_script, tls=server_tls) as server:
        result = await run_rest(server.url, rest_config(), tls=client_context(ca_file=ca_file))
    assert outcomes(result) == {"ok": 2}
    # Every judgement holds but, on a loaded machine, the latency of a first request that
    # includes the TLS handshake with a server in this same process.
    assert not [j for j in result.verdict.breached() if j.name != "http_latency"]


async def test_a_server_that_is_not_tls_on_an_https_url_is_outcome_tls(ca_file: str) -> None:
    """Plain HTTP where TLS was expected fails the handshake: outcome tls, with its reason."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await hold(reader)

    async with serving(script) as server:
        url = server.url.replace("http://127.0.0.1", "https://localhost")
        result = await run_rest(url, rest_config(), tls=client_context(ca_file=ca_file))
    assert outcomes(result) == {"tls": 2}
    (endpoint,) = result.endpoints
    assert [(r, n) for r, _, n in endpoint.diagnostics] == [("tls", 2)]
