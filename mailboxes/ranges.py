"""Reading a large stored message by the byte ranges a reader needs (IMAP FETCH of parts, the webmail).

A message of RANGED_OCTETS or more is read by ranges (Store.raw_range: incremental blob I/O on
SQLite, substring on PostgreSQL, seek in a blob directory), not whole; `Ranges` stands in for
its bytes and is sliced as they would be. Ranges covering most of the message (`mostly`) are
read as the whole message instead: one query is then cheaper.
"""

from __future__ import annotations

from .errors import NotFound

RANGED_OCTETS = 256 << 10  # a message this large or larger is read by the ranges a reader needs


class Ranges:
    """Some byte ranges of one stored message, sliced as the message's bytes would be (only where read)."""

    __slots__ = ("size", "parts")

    def __init__(self, size: int, parts: dict[tuple[int, int], bytes]) -> None:
        self.size = size
        self.parts = parts

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, s: slice) -> bytes:
        start, stop, _ = s.indices(self.size)
        if start >= stop:
            return b""
        for (a, b), data in self.parts.items():
            if a <= start and stop <= b:
                return data[start - a:stop - a]
        raise LookupError(f"bytes {start}-{stop} of the message were not read")  # its reader asked for less


def mostly(spans: list[tuple[int, int]], size: int) -> bool:
    """Whether these ranges cover more than three quarters of a message of ``size`` octets."""
    return sum(b - a for a, b in spans) > size * 3 // 4


async def read_ranges(store, partition: str, blob_id: int, size: int, spans: list[tuple[int, int]]) -> Ranges | bytes:
    """The spans of one message (overlapping ones read once); b"" if its body went meanwhile (RFC 2180 §4.1.3)."""
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    parts: dict[tuple[int, int], bytes] = {}
    try:
        for a, b in merged:
            parts[(a, b)] = await store.raw_range(partition, blob_id, a, b) if b > a else b""
    except NotFound:
        return b""
    return Ranges(size, parts)
