"""Modified UTF-7, the IMAP4rev1 encoding of international mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["MUTF7Error", "decode_mutf7", "encode_mutf7"]


class MUTF7Error(ValueError):
    """A mailbox name is not valid, canonical modified UTF-7."""


# RFC 3501 §5.1.3: octets 0x20-0x25 and 0x27-0x7e represent themselves; "&" shifts to
# modified BASE64 (RFC 2045 alphabet with "," for "/", no padding) of UTF-16BE and "-" shifts back.
_DIRECT = re.compile(r"[\x20-\x25\x27-\x7e]+")
_DIRECT_ONLY = re.compile(r"[\x20-\x25\x27-\x7e]*")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
_SHIFTED = re.compile(rb"&([A-Za-z0-9+,]*)-")


def encode_mutf7(name: str) -> bytes:
    """Encode a mailbox name to modified UTF-7; raise MUTF7Error for a lone surrogate."""
    if _DIRECT_ONLY.fullmatch(name):
        return name.encode("ascii")
    out: list[bytes] = []
    pos = 0
    for m in _DIRECT.finditer(name):
        if m.start() > pos:
            out.append(_shift(name[pos : m.start()]))
        out.append(m.group().encode("ascii"))
        pos = m.end()
    if pos < len(name):
        out.append(_shift(name[pos:]))
    return b"".join(out)


def _shift(run: str) -> bytes:
    if "&" in run:  # RFC 3501 §5.1.3: "&" itself is represented as "&-"
        return b"&-".join(_shift(part) if part else b"" for part in run.split("&"))
    try:
        utf16 = run.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise MUTF7Error("mailbox name contains a lone surrogate") from exc
    return b"&" + base64.b64encode(utf16).rstrip(b"=").replace(b"/", b",") + b"-"


def decode_mutf7(data: bytes) -> str:
    """Decode a modified UTF-7 mailbox name.

    Only the canonical form is accepted (``encode_mutf7(decode_mutf7(x)) == x``): shifted
    printable ASCII, split shift sequences, non-zero pad bits and 8-bit octets raise
    MUTF7Error, so two different wire names can never alias one mailbox.
    """
    if not _PRINTABLE.fullmatch(data):
        raise MUTF7Error("mailbox name has octets outside printable US-ASCII")
    if b"&" not in data:
        return data.decode("ascii")
    out: list[str] = []
    pos = 0
    for m in _SHIFTED.finditer(data):
        plain = data[pos : m.start()]
        if b"&" in plain:
            raise MUTF7Error("unterminated '&' shift sequence")
        out.append(plain.decode("ascii"))
        out.append(_unshift(m.group(1)) if m.group(1) else "&")
        pos = m.end()
    rest = data[pos:]
    if b"&" in rest:
        raise MUTF7Error("unterminated '&' shift sequence")
    out.append(rest.decode("ascii"))
    name = "".join(out)
    if encode_mutf7(name) != data:
        raise MUTF7Error("mailbox name is not canonical modified UTF-7")
    return name


def _unshift(payload: bytes) -> str:
    b64 = payload.replace(b",", b"/")
    try:
        raw = base64.b64decode(b64 + b"=" * (-len(b64) % 4), validate=True)
        return raw.decode("utf-16-be")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise MUTF7Error("bad modified BASE64 or UTF-16 in mailbox name") from exc
