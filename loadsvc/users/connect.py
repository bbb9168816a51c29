"""Opening kernel-stamped connections: a TCP (or TLS) connection whose reads are timed by Linux.

:func:`open_connection` is what users call: a :class:`~loadsvc.users.arrival.StampedTransport`
where the kernel clock is on (:func:`~loadsvc.users.arrival.kernel_clock_enabled`), TLS over it
by :mod:`loadsvc.users.stamped_tls`, else the loop's own transport. :func:`open_stamped` connects
the stamped socket itself (each address in turn, IP literals without a resolver round trip).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from loadsvc.users.arrival import SO_TIMESTAMPNS, StampedTransport, kernel_clock_enabled

_P = TypeVar("_P", bound=asyncio.BaseProtocol)


async def open_stamped(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], _P], host: str, port: int
) -> tuple[StampedTransport, _P]:
    """Connect to ``host:port`` (each address in turn) with kernel-stamped reads."""
    infos = _literal_address(host, port) or await loop.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )
    error: OSError = OSError(f"no address for {host!r}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:  # cancelled (a connect timeout): the socket must not leak
            sock.close()
            raise
        protocol = factory()
        assert isinstance(protocol, asyncio.Protocol)
        transport = StampedTransport(loop, sock, protocol)
        transport.start()
        return transport, protocol
    try:
        raise error
    finally:
        # The traceback holds this frame, whose local would hold the exception: a cycle per
        # refused connect (every client, every retry while a backend is down) that only the
        # cyclic collector frees.
        del error


def _literal_address(host: str, port: int) -> list[tuple[Any, ...]] | None:
    """``host`` as getaddrinfo would give it when it is an IP literal: no resolver round trip
    (a thread hop per connection, thousands while spawning)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return [(socket.AF_INET, socket.SOCK_STREAM, 0, "", (host, port))]
    return [(socket.AF_INET6, socket.SOCK_STREAM, 0, "", (host, port, 0, 0))]


async def open_connection(
    factory: Callable[[], _P],
    host: str,
    port: int,
    ssl: Any = None,
    server_hostname: str | None = None,
) -> tuple[asyncio.BaseTransport, _P]:
    """Open a TCP (or TLS) connection for ``factory``'s protocol: kernel-stamped where possible."""
    loop = asyncio.get_running_loop()
    if kernel_clock_enabled():
        if not ssl:  # None or False, as asyncio reads it: plain TCP
            return await open_stamped(loop, factory, host, port)
        # Imported here: TLS is built on this module's stamped socket (open_stamped).
        from loadsvc.users.stamped_tls import open_stamped_tls

        return await open_stamped_tls(loop, factory, host, port, ssl, server_hostname)
    return await loop.create_connection(
        factory, host, port, ssl=ssl, server_hostname=server_hostname
    )
