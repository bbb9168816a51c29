"""Response bodies of the REST users: decoding ``Content-Encoding`` within a size cap.

The body is decompressed after its last byte has been timed, into at most
``max_decompressed`` bytes (:func:`decode_body`), so a gzip bomb never inflates
past its cap. :class:`BodyTooLarge` is also what the HTTP client raises for a
body over its cap as sent.
"""

from __future__ import annotations

import zlib

from loadsvc.config.spec import RestUserSpec

_INFLATE_STEP = 1024 * 1024

DEFAULT_MAX_DECOMPRESSED = RestUserSpec.max_decompressed


class BodyTooLarge(Exception):
    """A response body over its cap, as sent or once decompressed."""


def decode_body(
    body: bytes, encoding: bytes, max_size: int = DEFAULT_MAX_DECOMPRESSED
) -> bytes | bytearray:
    """The body without its ``Content-Encoding`` (gzip or deflate), at most ``max_size``
    bytes: BodyTooLarge past it, ValueError when it cannot be decoded."""
    if not encoding or encoding == b"identity":
        return body
    try:
        if encoding in (b"gzip", b"x-gzip"):
            return _inflate(body, 16 + zlib.MAX_WBITS, max_size)
        if encoding == b"deflate":
            try:
                return _inflate(body, zlib.MAX_WBITS, max_size)
            except zlib.error:  # raw deflate, as some servers send it
                return _inflate(body, -zlib.MAX_WBITS, max_size)
    except zlib.error as exc:
        raise ValueError(f"bad {encoding.decode('latin-1')} body") from exc
    raise ValueError(f"unsupported content-encoding {encoding.decode('latin-1')}")


def _inflate(data: bytes, wbits: int, max_size: int) -> bytearray:
    # In steps into one growing buffer: the output never exists twice (zlib's one-shot
    # join would copy it), and a bomb stops one step past the cap.
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    while True:
        out += inflater.decompress(data, _INFLATE_STEP)
        if len(out) > max_size:
            out.clear()  # now, not when the traceback that holds this frame goes
            raise BodyTooLarge(f"body inflates past {max_size} bytes")
        data = inflater.unconsumed_tail
        if not data:
            break
    if not inflater.eof:
        raise zlib.error("truncated stream")
    return out
