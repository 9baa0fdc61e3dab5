"""decode_in_steps: a part decoded in steps (the event loop given back between them) is what one call gives.

mailboxes.transfer.decode_in_steps cuts base64 after a line end where the alphabet
characters so far make whole 4-character quanta and no "=" came (else, _base64_rest, right after an
alphabet character that completes a quantum, once the skipped bytes are dropped), and quoted-printable
after any line end, or inside a line longer than a step where no a2b_qp token is split. Whatever the bytes (damaged base64, "=" in the middle, junk, bare LF, no line ends) and
however small the step, the joined pieces equal binascii.a2b_base64 / decode_qp of the whole, or
both raise binascii.Error.
"""

from __future__ import annotations

import base64
import binascii

from hypothesis import given, settings
from hypothesis import strategies as st

from mailboxes.transfer import decode_in_steps, decode_qp

B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
QP_FRAGMENTS = [b"=", b"=3D", b"=C3=A9", b"=\r\n", b"=\n", b" \r\n", b"\t\n", b"\r\n", b"\n", b"abc", b"==", b"=G1", b" "]
B64_FRAGMENTS = [bytes([c]) for c in B64[:8]] + [b"=", b"==", b"\r\n", b"\n", b" ", b"\x00", b"\xff", b"QUJD", b"QUI=",
                                                 b"=====", b"!", b"/+"]


def whole(data: bytes, encoding: str) -> bytes | type:
    try:
        return decode_qp(data) if encoding == "quoted-printable" else binascii.a2b_base64(data)
    except binascii.Error:
        return binascii.Error


def stepped(data: bytes, encoding: str, step: int) -> bytes | type:
    try:
        return b"".join(decode_in_steps(data, encoding, step))
    except binascii.Error:
        return binascii.Error


@settings(max_examples=400, deadline=None)
@given(data=st.lists(st.sampled_from(B64_FRAGMENTS), max_size=120).map(b"".join), step=st.integers(1, 40))
def test_base64_of_any_shape_decodes_the_same_in_steps(data, step):
    assert stepped(data, "base64", step) == whole(data, "base64")


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=600), width=st.integers(1, 90), eol=st.sampled_from([b"\r\n", b"\n"]),
       step=st.integers(1, 200))
def test_wrapped_base64_of_any_line_width_decodes_the_same_in_steps(raw, width, eol, step):
    enc = base64.b64encode(raw)
    data = eol.join(enc[i:i + width] for i in range(0, len(enc), width)) + eol
    assert stepped(data, "base64", step) == raw


@settings(max_examples=400, deadline=None)
@given(data=st.lists(st.sampled_from(QP_FRAGMENTS), max_size=120).map(b"".join), step=st.integers(1, 40))
def test_quoted_printable_of_any_shape_decodes_the_same_in_steps(data, step):
    assert stepped(data, "quoted-printable", step) == whole(data, "quoted-printable")


@settings(max_examples=400, deadline=None)
@given(data=st.lists(st.sampled_from(B64_FRAGMENTS), max_size=200).map(b"".join), step=st.integers(1, 40))
def test_base64_without_line_ends_decodes_the_same_in_steps(data, step):
    """No line end to cut after: every step goes through _base64_rest (drop junk, cut after whole quanta)."""
    data = data.replace(b"\n", b"")
    assert stepped(data, "base64", step) == whole(data, "base64")


@settings(max_examples=600, deadline=None)
@given(data=st.lists(st.sampled_from(QP_FRAGMENTS + [b"\r", b"\t", b"=a", b"a"]), max_size=150).map(b"".join),
       step=st.integers(1, 40), lines=st.booleans())
def test_quoted_printable_lines_longer_than_a_step_decode_the_same_in_steps(data, step, lines):
    """No line end after the step (or none at all): the line is cut inside, where no token, soft break,
    trailing white space or CR can be split."""
    if not lines:
        data = data.replace(b"\n", b"")
    assert stepped(data, "quoted-printable", step) == whole(data, "quoted-printable")


def test_a_large_quoted_printable_part_on_one_line_is_decoded_in_steps():
    """20 MB of quoted-printable without a line end held the event loop ~50-70 ms in one call."""
    text = ("价格=3D 3,200 元 ".encode("utf-8") + b"=E4=BB=B7 ==41 =\t= x") * 40_000 + b"   "
    pieces = list(decode_in_steps(text, "quoted-printable", 1 << 16))
    assert b"".join(pieces) == decode_qp(text) and len(pieces) >= 10
    assert max(len(p) for p in pieces) <= (1 << 16) + 64
    # No place to cut within _QP_CUT_LOOK (crafted), or "=" CR (the rest of the line is one token): one call.
    for crafted in (b"=a" * 50_000, b"= " * 50_000, b"x" * 70_000 + b"=\r" + b"=41" * 30_000):
        assert stepped(crafted, "quoted-printable", 1 << 12) == whole(crafted, "quoted-printable")


def test_a_large_crafted_base64_part_is_still_decoded_in_steps():
    """A "=" early on, then 2 MiB on one line: no line end qualifies, yet no step takes it all."""
    raw = bytes(range(256)) * 8192
    body = base64.b64encode(raw)
    data = b"QQ=QQ \x00" + body[:4096] + b"=" + body[4096:] + b"!" * 100_000  # "=" at 2 and 0 of a quantum
    pieces = list(decode_in_steps(data, "base64", 1 << 18))
    assert b"".join(pieces) == whole(data, "base64") == b"A\x04\x10" + raw
    assert max(len(p) for p in pieces) <= (1 << 18) * 3 // 4 + 3 and sum(1 for p in pieces if p) >= 6
    # A complete padding ends the data for a2b_base64 on 3.11 and 3.12; 3.13 reads on: the same either way.
    ended = body[:4096] + b"AA==" + body
    assert stepped(ended, "base64", 1 << 16) == whole(ended, "base64")


def test_a_large_base64_part_is_decoded_in_several_steps():
    raw = bytes(range(256)) * 8192  # 2 MiB
    data = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    pieces = list(decode_in_steps(data, "base64", 1 << 18))
    assert len(pieces) >= 8 and b"".join(pieces) == raw
