"""TLS for the load: one client context per run, shared by every connection.

Building a context loads the CA store (tens of milliseconds on the event loop),
so it is built once, when the target is resolved, never per connection. A
staging backend often has a private CA (``ca_file``) or, by explicit choice, no
verification at all (``verify=False``).
"""

from __future__ import annotations

import ssl


def client_context(ca_file: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """A client context: the system CAs (plus ``ca_file``), or no verification at all.

    Raises OSError/ssl.SSLError when ``ca_file`` cannot be read or holds no certificate.
    """
    ctx = ssl.create_default_context()
    if ca_file is not None:
        ctx.load_verify_locations(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def describe_tls_error(exc: BaseException) -> str:
    """The certificate or protocol problem behind a failed handshake, in one line."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__
