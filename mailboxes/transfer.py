"""Content-Transfer-Encodings (RFC 2045 §6): quoted-printable decoding by the RFC's own rules, and base64 lines.

`binascii.a2b_qp` keeps the whitespace that transport agents add at line ends and does not take
"=" followed by whitespace as a soft line break; RFC 2045 §6.7 asks for both, so the line
structure is handled here and only the "=XX" escapes are left to binascii, line by line.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator

__all__ = ["decode_in_steps", "decode_qp", "encode_base64_lines"]

_WSP = b" \t"
BASE64_LINE_OCTETS = 57   # 57 octets encode to 76 characters, the RFC 2045 §6.8 line limit
DECODE_STEP = 1 << 20     # encoded octets decoded by one step of decode_in_steps (a few ms)
_NOT_BASE64 = bytes(range(256)).translate(
    None, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_ALIGN_LINES = 64  # lines a base64 step may grow by to end on a whole quantum (else _base64_rest)
_NOT_BASE64_OR_PAD = bytes(range(256)).translate(
    None, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_PAD_RUN = re.compile(rb"={4,}")
_MORE = {k: re.compile(rb"(?:=*[A-Za-z0-9+/]){%d}" % k) for k in (1, 2, 3)}  # k more alphabet characters
# Where a quoted-printable line may be cut (decode_in_steps): after two octets, the first no "=", the second
# neither "=" nor white space nor a line end. binascii.a2b_qp's tokens ("=XX", "==", "=" and one octet, one
# octet) are at most three long and none ends there except completed, so a token starts right after; and
# the piece before ends in no soft break, no trailing white space, no CR that decode_qp reads differently.
_QP_CUT = re.compile(rb"[^=][^=\s]")
_QP_CUT_LOOK = 4096  # octets searched for such a place (the regex runs ~30 ns an octet: not over 20 MB of "=a=a")


def decode_qp(data: bytes) -> bytes:
    """Decode a quoted-printable body (RFC 2045 §6.7).

    - rule 3: white space at the end of an encoded line is removed (a transport added it);
    - rule 5: "=" as the last character left on a line is a soft line break, so "=" followed
      only by white space joins the line with the next;
    - "=XX" decodes, lower-case hex included; any other "=" stays as it is (the robust reading
      §6.7 suggests). Line ends are kept as they came (CRLF, or a bare LF).
    """
    if b"=" not in data and b" \r" not in data and b"\t\r" not in data \
            and b" \n" not in data and b"\t\n" not in data and not data.endswith((b" ", b"\t")):
        return data   # nothing to decode and no trailing white space: the common plain-text case
    out: list[bytes] = []
    append = out.append
    a2b_qp = binascii.a2b_qp
    lines = data.split(b"\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        ending = b"\n"
        if line.endswith(b"\r") and i < last:  # a CR with no LF after it at the very end is data, not a line end
            line, ending = line[:-1], b"\r\n"
        line = line.rstrip(_WSP)
        if line.endswith(b"="):
            line, ending = line[:-1], b""
        if line.endswith(b"="):   # "==" before a soft break: the first "=" is not an escape, keep it
            line = a2b_qp(line[:-1]) + b"="
        elif b"=" in line:
            line = a2b_qp(line)
        append(line)
        append(ending)
    out.pop()   # split() yields one more piece than there are line ends; its ending is not in the data
    return b"".join(out)


def encode_base64_lines(data: bytes, eol: bytes = b"\r\n") -> bytes:
    """Base64 in lines of 76 characters (RFC 2045 §6.8), each ended by ``eol``; empty input gives b""."""
    b2a = binascii.b2a_base64
    return b"".join(b2a(data[i:i + BASE64_LINE_OCTETS], newline=False) + eol
                    for i in range(0, len(data), BASE64_LINE_OCTETS))


def decode_in_steps(data: bytes, encoding: str, step: int = DECODE_STEP) -> Iterator[bytes]:
    """``data`` decoded (base64 or quoted-printable) in pieces of about ``step`` encoded octets.

    The pieces joined are what one ``binascii.a2b_base64(data)`` or ``decode_qp(data)`` gives,
    raising as it would: a caller gives the event loop back between pieces, where one call on a
    20 MB part held it 75 ms. Steps end after a line end. Quoted-printable decodes line by line
    (soft breaks and escapes never cross a line end), so any line end will do; a line longer than
    a step (no line end after it) is cut inside where _QP_CUT allows (after an "=" CR, or in a
    line made only of "=" and one other octet in turn, or of "=" and white space, there is no
    such place: the rest is decoded in one call). Base64 carries
    state within a 4-character quantum: a step ends where the alphabet characters so far make
    whole quanta and no "=" came; when no line end within _ALIGN_LINES more lines will do (a "="
    before the end, lines that never make whole quanta, no line ends: crafted or damaged input)
    the rest goes through _base64_rest, which steps just as well.
    """
    qp = encoding == "quoted-printable"
    decode = decode_qp if qp else binascii.a2b_base64
    pos, end = 0, len(data)
    last_line = end  # no line end from here on (a failed look: not scanned again at every step)
    while end - pos > step:
        cut = data.find(b"\n", pos + step) if pos + step < last_line else -1
        if cut >= 0 and not qp:
            cut = _whole_quanta(data, pos, cut)
        if cut < 0:
            if not qp:
                yield from _base64_rest(data, pos, step)
                return
            # A long last line: cut inside it. Not after an "=" and a CR: a2b_qp skips from there to
            # the line's end (one token as long as the line), so the rest goes in one call.
            last_line = min(last_line, pos + step)
            inside = _QP_CUT.search(data, pos + step - 1, pos + step + _QP_CUT_LOOK)
            if inside is None or data.find(b"=\r", pos, inside.end()) >= 0:
                break
            cut = inside.end() - 1
        yield decode(data[pos:cut + 1])
        pos = cut + 1
    yield decode(data[pos:])


def _base64_rest(data: bytes, pos: int, step: int) -> Iterator[bytes]:
    """``binascii.a2b_base64(data[pos:])`` in steps of about ``step`` characters, whatever their shape.

    Two passes, each in steps (an empty piece where nothing is decoded yet). First the bytes the
    decoder skips without a change of state (all but the alphabet and "=") are dropped, and runs
    of four or more "=" cut to three: a run of three or more ends the data or is ignored as any
    longer run is. Then a step ends right after an alphabet character that completes a quantum:
    the decoder is in its first state there (no partial quantum, no "=" counted), whichever
    Python's rules for a "=" before the end apply (they changed in 3.13). A step whose output is
    shorter than its characters make ended at a complete padding, after which a2b_base64 reads
    nothing (3.11, 3.12): neither do we. The property tests compare with one call on the running
    interpreter.
    """
    a2b = binascii.a2b_base64
    clean = bytearray()
    for i in range(pos, len(data), step):
        kept = data[i:i + step].translate(None, _NOT_BASE64_OR_PAD)
        clean += _PAD_RUN.sub(b"===", kept) if b"====" in kept else kept
        yield b""
    pos, end = 0, len(clean)
    while end - pos > step:
        cut = pos + step
        chars = step - clean.count(b"=", pos, cut)  # the rest are alphabet characters now
        need = -chars % 4
        if need:
            more = _MORE[need].match(clean, cut)
            if more is None:  # no quantum completes after cut: only "=" runs (3 per step at most) follow
                break
            cut, chars = more.end(), chars + need
        out = a2b(clean[pos:cut])
        yield out
        if len(out) < chars // 4 * 3:
            return
        pos = cut
    yield a2b(clean[pos:])


def _whole_quanta(data: bytes, pos: int, cut: int) -> int:
    """The first line end from ``cut`` on where data[pos:] holds whole base64 quanta and no "="; -1: none near."""
    piece = data[pos:cut + 1]
    if b"=" in piece:
        return -1
    count = len(piece.translate(None, _NOT_BASE64))
    for _ in range(_ALIGN_LINES):
        if count % 4 == 0:
            return cut
        nxt = data.find(b"\n", cut + 1)
        if nxt < 0:
            return -1
        line = data[cut + 1:nxt + 1]
        if b"=" in line:
            return -1
        count += len(line.translate(None, _NOT_BASE64))
        cut = nxt
    return cut if count % 4 == 0 else -1
