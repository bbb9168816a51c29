"""Response bodies: Content-Encoding decoded within the decompressed-size cap."""

from __future__ import annotations

import gzip
import zlib

import pytest

from loadsvc.users.http_body import BodyTooLarge, decode_body

DOC = b'{"symbol": "VNM", "price": 71.5}'


def _raw_deflate(data: bytes) -> bytes:
    squeezer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return squeezer.compress(data) + squeezer.flush()


@pytest.mark.parametrize("encoding", [b"", b"identity"])
def test_an_unencoded_body_is_returned_as_is(encoding: bytes) -> None:
    """A body without a content encoding (or ``identity``) comes back unchanged."""
    assert decode_body(DOC, encoding) == DOC


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        (b"gzip", gzip.compress(DOC)),
        (b"x-gzip", gzip.compress(DOC)),
        (b"deflate", zlib.compress(DOC)),
        (b"deflate", _raw_deflate(DOC)),
    ],
    ids=["gzip", "x-gzip", "zlib-deflate", "raw-deflate"],
)
def test_gzip_and_both_deflates_decode(encoding: bytes, encoded: bytes) -> None:
    """gzip, x-gzip, zlib-wrapped deflate and raw deflate all decode to the original body."""
    assert bytes(decode_body(encoded, encoding)) == DOC


def test_a_body_inflating_past_the_cap_is_too_large() -> None:
    """A body that inflates one byte past ``max_size`` raises BodyTooLarge; at the cap it passes."""
    body = b"x" * 4096
    assert len(decode_body(gzip.compress(body), b"gzip", max_size=4096)) == 4096
    with pytest.raises(BodyTooLarge):
        decode_body(gzip.compress(body + b"x"), b"gzip", max_size=4096)


def test_a_bomb_stops_one_step_past_the_cap() -> None:
    """A 64 MiB gzip of zeros is refused without inflating it whole (cap 1 MiB)."""
    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=1)
    with pytest.raises(BodyTooLarge, match="1048576"):
        decode_body(bomb, b"gzip", max_size=1024 * 1024)


@pytest.mark.parametrize(
    ("encoding", "encoded", "message"),
    [
        (b"gzip", b"not gzip at all", "bad gzip body"),
        (b"gzip", gzip.compress(DOC)[:-12], "bad gzip body"),
        (b"br", DOC, "unsupported content-encoding br"),
    ],
    ids=["garbage", "truncated", "unsupported"],
)
def test_an_undecodable_body_is_a_value_error(
    encoding: bytes, encoded: bytes, message: str
) -> None:
    """Garbage, a truncated stream and an unknown encoding raise ValueError saying which."""
    with pytest.raises(ValueError, match=message):
        decode_body(encoded, encoding)
