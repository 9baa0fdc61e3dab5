"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3): known vectors, canonical-form strictness."""

from __future__ import annotations

import pytest

from mailserver.imap.mutf7 import MUTF7Error, decode_mutf7, encode_mutf7

VECTORS = [
    ("INBOX", b"INBOX"),
    ("", b""),
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3 example
    ("其他文件夹", b"&UXZO1mWHTvZZOQ-"),
    ("已发送", b"&XfJT0ZAB-"),
    ("Entwürfe", b"Entw&APw-rfe"),
    ("A&B", b"A&-B"),
    ("&&", b"&-&-"),
    ("é&ü", b"&AOk-&-&APw-"),
    ("😀", b"&2D3eAA-"),
    ("tab\there", b"tab&AAk-here"),
    ("Отправленные", b"&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
]


@pytest.mark.parametrize("text, wire", VECTORS)
def test_known_vectors(text, wire):
    assert encode_mutf7(text) == wire
    assert decode_mutf7(wire) == text


@pytest.mark.parametrize(
    "bad",
    [
        b"&",  # unterminated shift
        b"a&Jjo",  # unterminated shift
        b"&AGE-",  # "a" shifted: printable ASCII must represent itself
        b"&AOk-&APw-",  # split shift sequences are not canonical
        b"&AOl-",  # non-zero pad bits
        b"&U-",  # truncated UTF-16
        b"&2D0-",  # lone high surrogate
        b"&Jjo!-",  # not modified BASE64
        b"caf\xc3\xa9",  # raw 8-bit
        b"a\x00b",  # control octet
        b"&AC8-",  # "/" shifted
    ],
)
def test_invalid_names_raise(bad):
    with pytest.raises(MUTF7Error):
        decode_mutf7(bad)


def test_lone_surrogate_cannot_be_encoded():
    with pytest.raises(MUTF7Error):
        encode_mutf7("\ud800")


def test_error_is_a_value_error():
    assert issubclass(MUTF7Error, ValueError)
