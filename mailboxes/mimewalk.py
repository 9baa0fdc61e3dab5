"""Multipart delimiter lines (RFC 2046 §5.1.1): where a multipart body's parts start and end, on the raw bytes."""

from __future__ import annotations

__all__ = ["end_before_delimiter", "next_delimiter"]


def next_delimiter(raw: bytes, pos: int, end: int, delim: bytes) -> tuple[int, int, bool] | None:
    """The next delimiter line of a multipart body at or after pos (RFC 2046 §5.1.1).

    A delimiter is "--boundary" at the start of a line followed only by whitespace (transport
    padding); "--boundary--" closes. Returns (start, end of its line, closes) or None.
    """
    first = pos
    while True:
        i = raw.find(delim, pos, end)
        if i < 0:
            return None
        pos = i + 1
        if i != first and raw[i - 1] != 0x0A:
            continue
        after = i + len(delim)
        close = raw.startswith(b"--", after, end)
        nl = raw.find(b"\n", after, end)
        line_end = end if nl < 0 else nl + 1
        if close or not raw[after:line_end].strip(b" \t\r\n"):
            return i, line_end, close


def end_before_delimiter(raw: bytes, part_start: int, delimiter_start: int) -> int:
    """Where a body part ends: the line break before a delimiter belongs to it (RFC 2046 §5.1.1)."""
    part_end = delimiter_start
    if part_end > part_start and raw[part_end - 1] == 0x0A:
        part_end -= 1
        if part_end > part_start and raw[part_end - 1] == 0x0D:
            part_end -= 1
    return part_end
