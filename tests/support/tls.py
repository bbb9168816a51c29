"""TLS for test servers on 127.0.0.1: a private CA's certificate for localhost (trustme)."""

from __future__ import annotations

import ssl

import trustme


def localhost_tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh certificate for localhost, and a client context that
    trusts only the CA that issued it."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    return server_tls, client_tls
