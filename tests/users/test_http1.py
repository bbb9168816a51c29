"""The REST users' HTTP/1.1 client against real servers on 127.0.0.1, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from loadsvc.users.http1 import Http1Client, Origin, ProtocolError, request_bytes
from loadsvc.users.http_body import decode_body
from tests.support.loops import Run
from tests.support.rawserver import RawServer, Script, read_request, serving
from tests.support.timing import scaled
from tests.support.tls import localhost_tls_pair


@contextlib.asynccontextmanager
async def app_server(peers: set[object]) -> AsyncIterator[str]:
    """An aiohttp server with a plain, a chunked and a gzip route; notes each client port."""

    def note(request: web.Request) -> None:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))

    async def plain(request: web.Request) -> web.Response:
        note(request)
        return web.json_response({"a": 1, "b": 2})

    async def chunked(request: web.Request) -> web.StreamResponse:
        note(request)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"a": ', b"1, ", b'"b": 2}'):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def gzipped(request: web.Request) -> web.Response:
        note(request)
        return web.Response(body=gzip.compress(b'{"a": 1}'), headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/plain", plain)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/gzip", gzipped)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def get(url: str, path: str = "/") -> tuple[Http1Client, bytes]:
    """A client for ``url`` and the prebuilt GET of ``path``."""
    origin = Origin.from_url(url)
    return Http1Client(origin), request_bytes("GET", url + path, origin, ())


@contextlib.asynccontextmanager
async def client_of(script: Script) -> AsyncIterator[tuple[Http1Client, bytes, RawServer]]:
    """A client and its prebuilt GET of ``/`` against ``script``'s server; closed after."""
    async with serving(script) as server:
        client, data = get(server.url)
        try:
            yield client, data, server
        finally:
            client.close()


def test_requests_reuse_one_keep_alive_connection(run: Run) -> None:
    """Consecutive requests of one client go over a single connection."""

    async def body() -> None:
        peers: set[object] = set()
        async with app_server(peers) as url:
            client, data = get(url, "/plain")
            for _ in range(5):
                response = await client.request(data, "GET", keep_body=True, timeout_s=5)
                assert (response.status, response.body) == (200, b'{"a": 1, "b": 2}')
            client.close()
        assert len(peers) == 1

    run(body())


def test_chunked_body_is_reassembled_and_the_connection_reused(run: Run) -> None:
    """A chunked response's body is its chunks joined; the connection stays usable."""

    async def body() -> None:
        peers: set[object] = set()
        async with app_server(peers) as url:
            client, data = get(url, "/chunked")
            for _ in range(2):
                response = await client.request(data, "GET", keep_body=True, timeout_s=5)
                assert response.body == b'{"a": 1, "b": 2}'
            client.close()
        assert len(peers) == 1

    run(body())


def test_gzip_body_is_decoded(run: Run) -> None:
    """A gzip-encoded body is decoded for validation."""

    async def body() -> None:
        async with app_server(set()) as url:
            client, data = get(url, "/gzip")
            response = await client.request(data, "GET", keep_body=True, timeout_s=5)
            assert decode_body(response.body, response.encoding) == b'{"a": 1}'
            client.close()

    run(body())


def test_body_not_kept_unless_asked(run: Run) -> None:
    """keep_body=False reads the body off the wire without keeping it."""

    async def body() -> None:
        async with app_server(set()) as url:
            client, data = get(url, "/plain")
            response = await client.request(data, "GET", keep_body=False, timeout_s=5)
            assert (response.status, response.body) == (200, b"")
            client.close()

    run(body())


def test_request_carries_host_and_configured_headers(run: Run) -> None:
    """The request line, Host and the target's headers are sent as configured."""
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    async def body() -> None:
        async with serving(script) as server:
            url = server.url
            origin = Origin.from_url(url)
            data = request_bytes("GET", url + "/api/x?limit=5", origin, (("Authorization", "t"),))
            client = Http1Client(origin)
            response = await client.request(data, "GET", keep_body=True, timeout_s=5)
            assert response.status == 204
            client.close()
        head = seen[0].decode()
        assert head.startswith("GET /api/x?limit=5 HTTP/1.1\r\n")
        assert f"Host: {url.removeprefix('http://')}\r\n" in head
        assert "Authorization: t\r\n" in head

    run(body())


def test_body_until_close_after_an_interim_response(run: Run) -> None:
    """A 100 Continue is skipped; a body without a length ends when the server closes."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nhello ")
        await writer.drain()
        writer.write(b"world")
        writer.close()

    async def body() -> None:
        async with client_of(script) as (client, data, _):
            response = await client.request(data, "GET", keep_body=True, timeout_s=5)
            assert (response.status, response.body) == (200, b"hello world")

    run(body())


def test_idle_connection_closed_by_the_server_is_retried(run: Run) -> None:
    """When the server closed a kept-alive connection, the request goes on a new one."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # Close after one response without saying so: the client finds out on reuse.
        await reader.read(1)
        writer.close()

    async def body() -> None:
        async with client_of(script) as (client, data, server):
            for _ in range(3):
                response = await client.request(data, "GET", keep_body=True, timeout_s=5)
                assert response.body == b"ok"
        assert server.connections == 3

    run(body())


def test_garbage_is_a_protocol_error(run: Run) -> None:
    """A reply that is not HTTP raises ProtocolError, a ConnectionError."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async def body() -> None:
        async with client_of(script) as (client, data, _):
            with pytest.raises(ProtocolError):
                await client.request(data, "GET", keep_body=True, timeout_s=5)

    run(body())


def test_abandoned_request_drops_the_connection(run: Run) -> None:
    """A request cancelled by its timeout leaves no half-read connection behind."""
    connections = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        if connections == 1:
            await asyncio.sleep(0.5)  # too slow for the first request's timeout
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def body() -> None:
        async with client_of(script) as (client, data, server):
            with pytest.raises(TimeoutError):
                await client.request(data, "GET", keep_body=True, timeout_s=0.1)
            response = await client.request(data, "GET", keep_body=True, timeout_s=5)
            assert response.body == b"ok"
        assert server.connections == 2

    run(body())


def test_each_request_on_a_kept_connection_times_out_at_its_own_deadline(run: Run) -> None:
    """After quick requests, a stalled request on the same connection fails at its own
    deadline: not at an earlier request's, and not never."""
    requests = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        while True:
            await read_request(reader)
            requests += 1
            if requests == 4:
                await reader.read()  # stalls until the client gives up and drops it
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def body() -> None:
        loop = asyncio.get_running_loop()
        timeout = scaled(0.3)
        async with client_of(script) as (client, data, server):
            for _ in range(3):
                response = await client.request(data, "GET", keep_body=True, timeout_s=timeout)
                assert response.body == b"ok"
            # Halfway to the first requests' deadlines: the timer armed for them fires while
            # the stalled request is out, which is not yet due.
            await asyncio.sleep(timeout * 0.5)
            started = loop.time()
            with pytest.raises(TimeoutError):
                await client.request(data, "GET", keep_body=True, timeout_s=timeout)
            waited = loop.time() - started
            assert waited >= timeout * 0.95  # not cut short by an earlier request's deadline
            assert waited < timeout + scaled(5.0)  # and it did fire
            assert server.connections == 1

    run(body())


def test_refused_connection_raises_oserror(run: Run) -> None:
    """Nothing listening: an OSError, which the user counts as a connection_error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def body() -> None:
        client, data = get(f"http://127.0.0.1:{port}")
        with pytest.raises(OSError):
            await client.request(data, "GET", keep_body=True, timeout_s=5)

    run(body())


def test_header_injection_is_refused() -> None:
    """A header value with a line break cannot be sent."""
    origin = Origin.from_url("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="cannot be sent"):
        request_bytes("GET", "http://127.0.0.1:1/", origin, (("X", "a\r\nEvil: 1"),))


def test_https_with_the_origin_tls_context(run: Run) -> None:
    """Over TLS: the request is answered, and the connection is kept alive."""
    server_tls, client_tls = localhost_tls_pair()
    peers: list[object] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername"))
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def body() -> None:
        async with serving(script, tls=server_tls) as server:
            origin = Origin.from_url(server.url, client_tls)
            client = Http1Client(origin)
            data = request_bytes("GET", server.url + "/", origin, ())
            for _ in range(3):
                response = await client.request(data, "GET", keep_body=True, timeout_s=5)
                assert response.body == b"ok"
            client.close()
        assert len(peers) == 1

    run(body())
