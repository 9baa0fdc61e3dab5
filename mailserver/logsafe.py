"""Client-controlled values made safe for one-line `key=value` logs: escaped and bounded.

A user name sent as an IMAP literal can hold CR LF; written as it came it
forged a whole `auth ok` line in the log. `logfield` escapes every control,
separator and space character the way `repr` does (and the backslash, so the
escape cannot be faked), and cuts the value at `limit` characters.
"""

from __future__ import annotations

__all__ = ["logfield"]

LOG_FIELD_LIMIT = 200  # characters of one client-controlled value kept in a log line

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", " ": "\\x20"}


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    if ch.isprintable() and not ch.isspace():
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def logfield(value: object, limit: int = LOG_FIELD_LIMIT) -> str:
    """`value` as one log token: no line breaks, no spaces, at most `limit` characters of it (then `...`)."""
    if value is None:
        return "-"
    text = str(value)
    if not text:
        return '""'
    cut = text[:limit]
    # The usual value (an address, a host name) needs no escaping: printable ASCII, no space or backslash.
    if cut.isascii() and cut.isprintable() and " " not in cut and "\\" not in cut:
        return cut + "..." if len(text) > limit else cut
    out = "".join(_escape(c) for c in cut)
    return out + "..." if len(text) > limit else out
