"""What was made of bytes seen lately, for bytes that come again: a broadcast's frame on
every connection, a cached document in every user's response.

:class:`SameBytes` keeps, per length, the latest bytes and what was made of them (a
validated str, a verdict), for up to ``entries`` lengths of at most ``max_bytes`` each.
Looking up equal bytes is a dict lookup and a memcmp; other bytes of a length seen are not
found (compared whole, never by length alone), so they are judged on their own.
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class SameBytes(Generic[V]):
    """The latest bytes of each length seen and what was made of them (bounded)."""

    __slots__ = ("_by_len", "_entries", "_max_bytes")

    def __init__(self, max_bytes: int = 64 * 2**10, entries: int = 16) -> None:
        self._by_len: dict[int, tuple[bytes, V]] = {}
        self._max_bytes = max_bytes
        self._entries = entries

    def get(self, data: bytes | bytearray) -> tuple[bytes, V] | None:
        """What was made of bytes equal to ``data``, as (the bytes kept, it); None if not kept."""
        seen = self._by_len.get(len(data))
        return seen if seen is not None and seen[0] == data else None

    def keep(self, data: bytes | bytearray, made: V) -> None:
        """Remember ``made`` for ``data`` (a bytearray is copied: not the memo's to keep)."""
        n = len(data)
        if n > self._max_bytes:
            return
        by_len = self._by_len
        if n not in by_len and len(by_len) >= self._entries:
            by_len.clear()
        by_len[n] = (data if type(data) is bytes else bytes(data), made)
