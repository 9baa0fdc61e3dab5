"""Content-Transfer-Encodings (RFC 2045 §6): quoted-printable decoding by the RFC's own rules, and base64 lines.

`binascii.a2b_qp` keeps the whitespace that transport agents add at line ends and does not take
"=" followed by whitespace as a soft line break; RFC 2045 §6.7 asks for both, so the line
structure is handled here and only the "=XX" escapes are left to binascii, line by line.
"""

from __future__ import annotations

import binascii

__all__ = ["decode_qp", "encode_base64_lines"]

_WSP = b" \t"
BASE64_LINE_OCTETS = 57   # 57 octets encode to 76 characters, the RFC 2045 §6.8 line limit


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
    for line in data.split(b"\n"):
        ending = b"\n"
        if line.endswith(b"\r"):
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
