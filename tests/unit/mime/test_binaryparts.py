"""Binary parts to base64 on APPEND (RFC 3516 §4.4 literal8, RFC 3501 §4.3 no NUL in a literal, RFC 2045 §6.8)."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from mailboxes.binaryparts import binary_parts_to_base64
from mailboxes.mime import find_part, parse_message
from mailserver.imap.fetch import binary_bytes

HEAD = b"From: a@city.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"


def part_of(raw: bytes, path: tuple[int, ...]):
    m = parse_message(raw)
    p = find_part(m.body, path)
    return p, raw[p.header_start:p.body_start], raw[p.body_start:p.body_end]


def test_nothing_to_convert_returns_the_same_bytes():
    raw = HEAD + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xe4\xbd\xa0\r\n"
    assert binary_parts_to_base64(raw, True) is raw
    binary_no_nul = HEAD + b"Content-Transfer-Encoding: binary\r\n\r\n\xff\xfe\r\n"
    assert binary_parts_to_base64(binary_no_nul, False) is binary_no_nul   # plain literal: legal CHAR8, kept


def test_single_part_message_binary_with_literal8():
    raw = HEAD + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: Binary\r\n\r\n\xff\x00\xfe"
    out = binary_parts_to_base64(raw, True)
    assert out == (HEAD + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                   + base64.b64encode(b"\xff\x00\xfe") + b"\r\n")
    assert parse_message(out).envelope.subject == "s"


def test_folded_and_repeated_cte_fields_are_all_replaced():
    raw = (HEAD + b"Content-Transfer-Encoding:\r\n binary\r\nContent-Type: application/x-thing\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\nA\x00B")
    p, header, body = part_of(binary_parts_to_base64(raw, True), (1,))
    assert header.count(b"Content-Transfer-Encoding") == 1 and p.encoding == "base64"
    assert header.endswith(b"Content-Type: application/x-thing\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    assert base64.b64decode(body) == b"A\x00B"


def test_multipart_only_the_nul_part_changes_and_delimiters_stay():
    raw = (HEAD + b"Content-Type: multipart/mixed; boundary=q\r\n\r\npreamble\r\n"
           b"--q\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
           b"--q\r\nContent-Type: image/png\r\n\r\n\x89PNG\x00\x00\r\n"
           b"--q\r\n\r\nno header, NUL\x00\r\n--q--\r\nepilogue\r\n")
    out = binary_parts_to_base64(raw, False)
    assert out.startswith(raw[:raw.index(b"--q\r\nContent-Type: image/png")])   # preamble and part 1 untouched
    assert out.endswith(b"\r\n--q--\r\nepilogue\r\n")
    p2, _h2, b2 = part_of(out, (2,))
    p3, h3, b3 = part_of(out, (3,))
    assert (p2.content_type, p2.encoding, base64.b64decode(b2)) == ("image/png", "base64", b"\x89PNG\x00\x00")
    assert h3 == b"Content-Transfer-Encoding: base64\r\n\r\n" and base64.b64decode(b3) == b"no header, NUL\x00"
    assert b"\x00" not in out


def test_damaged_qp_is_decoded_before_reencoding_and_unknown_encodings_stay():
    raw = (HEAD + b"Content-Type: multipart/mixed; boundary=q\r\n\r\n"
           b"--q\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx=3D\x00y\r\n"
           b"--q\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin \x00\r\n--q--\r\n")
    out = binary_parts_to_base64(raw, False)
    _p, _h, body = part_of(out, (1,))
    assert base64.b64decode(body) == b"x=\x00y"          # what BINARY[1] gave before: the decoded octets
    assert part_of(out, (2,))[2] == b"begin \x00"     # not ours to re-encode; FETCH shows 0x80 for it


def test_parts_inside_message_rfc822_are_converted_not_the_rfc822_part():
    inner = b"Subject: inner\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01"
    raw = (HEAD + b"Content-Type: multipart/mixed; boundary=q\r\n\r\n"
           b"--q\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: binary\r\n\r\n" + inner +
           b"\r\n--q--\r\n")
    out = binary_parts_to_base64(raw, True)
    m = parse_message(out)
    rfc822 = find_part(m.body, (1,))
    assert rfc822.content_type == "message/rfc822" and rfc822.encoding == "binary"   # RFC 2046 §5.2.1
    assert rfc822.message.envelope.subject == "inner"
    leaf = find_part(m.body, (1, 1))
    assert leaf.encoding == "base64" and base64.b64decode(out[leaf.body_start:leaf.body_end]) == b"\x00\x01"


def test_lf_only_message_keeps_lf_line_ends():
    raw = b"Subject: s\nContent-Transfer-Encoding: binary\n\n" + b"\x00" * 100
    out = binary_parts_to_base64(raw, True)
    assert b"\r" not in out and out.startswith(b"Subject: s\nContent-Transfer-Encoding: base64\n\n")
    lines = out.split(b"\n\n", 1)[1].split(b"\n")
    assert [len(x) for x in lines] == [76, 60, 0]   # 57 octets per 76-character line (RFC 2045 §6.8)


@settings(deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=200), min_size=1, max_size=5), st.booleans())
def test_any_binary_parts_come_back_through_binary_and_never_hold_nul(contents, literal8):
    parts = b"".join(b"--sep\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                     + c + b"\r\n" for c in contents)
    raw = HEAD + b"Content-Type: multipart/mixed; boundary=sep\r\n\r\n" + parts + b"--sep--\r\n"
    if any(b"\r\n--sep" in c + b"\r\n" or c.startswith(b"--sep") for c in contents):
        return   # content that holds the delimiter is not a valid part (RFC 2046 §5.1.1)
    out = binary_parts_to_base64(raw, literal8)
    m = parse_message(out)
    assert len(m.body.parts) == len(contents)
    for k, content in enumerate(contents, 1):
        assert binary_bytes(out, m.body, (k,)) == content
    assert b"\x00" not in out   # NUL parts are converted with or without literal8
