"""TLS settings against a real https server with a private CA: one context that connects."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web
from structlog.testing import capture_logs

from loadsvc.environment import resolve_target
from loadsvc.tls import describe_tls_error
from loadsvc.users.base import Target


@pytest.fixture(scope="module")
def private_ca() -> trustme.CA:
    """A certificate authority that no system store trusts."""
    return trustme.CA()


@pytest.fixture
async def https_url(private_ca: trustme.CA) -> AsyncIterator[str]:
    """An aiohttp https server on 127.0.0.1 port 0 with a certificate of the private CA."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    private_ca.issue_cert("127.0.0.1").configure_cert(server_ctx)

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def get(target: Target, path: str) -> str:
    """GET ``path`` over the target's one TLS context."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(target.http_url(path), ssl=target.tls) as resp,
    ):
        return await resp.text()


async def test_a_private_ca_file_yields_a_context_that_connects(
    https_url: str, private_ca: trustme.CA, tmp_path: Path
) -> None:
    """--ca-file with the private CA: the target's one context verifies the server and connects."""
    ca_pem = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_pem))
    target = resolve_target(https_url, env={}, ca_file=str(ca_pem))
    assert target.tls is not None and target.tls.verify_mode == ssl.CERT_REQUIRED
    assert await get(target, "/hello") == "hello"
    from_env = resolve_target(https_url, env={"LOADSVC_CA_FILE": str(ca_pem)})
    assert await get(from_env, "/hello") == "hello"


async def test_without_the_ca_the_certificate_problem_is_named(https_url: str) -> None:
    """With the default context the private certificate fails, described as a verify failure."""
    target = resolve_target(https_url, env={})
    assert target.tls is not None  # built once here, not per connection
    with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
        await get(target, "/hello")
    described = describe_tls_error(caught.value.certificate_error)
    assert described.startswith("certificate verify failed: ")


async def test_insecure_connects_without_verification_and_warns_once(https_url: str) -> None:
    """--insecure (or LOADSVC_TLS_INSECURE=1) skips verification and logs one warning."""
    with capture_logs() as logs:
        target = resolve_target(https_url, env={}, insecure=True)
    assert target.tls is not None and target.tls.verify_mode == ssl.CERT_NONE
    assert await get(target, "/hello") == "hello"
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and "TLS verification is off" in warnings[0]["event"]
    from_env = resolve_target(https_url, env={"LOADSVC_TLS_INSECURE": "1"})
    assert await get(from_env, "/hello") == "hello"


def test_a_plain_http_target_needs_no_context() -> None:
    """An http:// target without TLS settings gets no context (nothing loaded at start-up)."""
    assert resolve_target("http://127.0.0.1:9", env={}).tls is None
