"""Binary body parts rewritten as base64 on the way in, so every BODY[] section is a legal IMAP string.

RFC 3516 §4.4 lets a client APPEND a message as literal8, whose parts may hold any octet,
NUL included. IMAP4rev1 strings are CHAR8, which excludes NUL (RFC 3501 §4.3), so such a
part could not be sent back in a BODY[...] literal. As Dovecot does (istream-binary-converter),
each such leaf part is stored base64-encoded with its Content-Transfer-Encoding changed to
base64 (RFC 2045 §6.8): BODY[] is then 7-bit, and BINARY[] still gives the original octets,
since it removes the transfer encoding (RFC 3516 §4.2). Converting is kinder than refusing:
the client gets its message stored, and clients without BINARY can still read the part.

Which parts: leaves (not multipart, not message/*, whose encoding RFC 2046 §5.2 limits to
7bit/8bit/binary) declared "binary" when the message came as literal8, and any leaf whose
body holds a NUL (7bit, 8bit and binary may not carry NUL in IMAP; a base64 or
quoted-printable body with a raw NUL is damaged and is decoded first, so BINARY[] keeps
what a decoder would have read). Parts with an unknown encoding are left as they are.
"""

from __future__ import annotations

import re

from .charsets import decode_transfer
from .mime import iter_parts, parse_message
from .transfer import encode_base64_lines

__all__ = ["binary_parts_to_base64"]

_BINARY_CTE = re.compile(rb"^content-transfer-encoding[ \t]*:[ \t]*binary", re.I | re.M)
_CONVERTIBLE = frozenset({"7bit", "8bit", "binary", "base64", "quoted-printable"})
_CTE_LINE = b"Content-Transfer-Encoding: base64"


def binary_parts_to_base64(raw: bytes, literal8: bool) -> bytes:
    """The message with its binary leaf parts in base64; `raw` itself when there is nothing to convert."""
    if b"\x00" not in raw and not (literal8 and _BINARY_CTE.search(raw)):
        return raw
    edits: list[tuple[int, int, bytes]] = []
    for _path, part in iter_parts(parse_message(raw).body):
        if part.is_multipart or part.type == "message" or part.encoding not in _CONVERTIBLE:
            continue
        has_nul = raw.find(b"\x00", part.body_start, part.body_end) >= 0
        if not has_nul and not (literal8 and part.encoding == "binary"):
            continue
        header = raw[part.header_start:part.body_start]
        eol = b"\n" if b"\n" in header and b"\r\n" not in header else b"\r\n"   # as the header has them
        body = encode_base64_lines(decode_transfer(raw[part.body_start:part.body_end], part.encoding), eol)
        if part.body_end != len(raw):   # the line break before the next delimiter belongs to it
            body = body[:-len(eol)]
        edits.append((part.header_start, part.body_end,
                      _base64_header(header, eol) + body))
    out = []
    pos = 0
    for start, end, replacement in sorted(edits):
        out += [raw[pos:start], replacement]
        pos = end
    out.append(raw[pos:])
    return b"".join(out)


def _base64_header(header: bytes, eol: bytes) -> bytes:
    """A part header with its Content-Transfer-Encoding field(s) replaced by base64, blank line kept."""
    kept: list[bytes] = []
    dropping = False
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):   # the blank line that ends the header (RFC 5322 §2.1)
            break
        if line[:1] in (b" ", b"\t"):   # continuation of the field before (RFC 5322 §2.2.3)
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() == b"content-transfer-encoding"
        if not dropping:
            kept.append(line if line.endswith(b"\n") else line + eol)
    return b"".join(kept) + _CTE_LINE + eol + eol
