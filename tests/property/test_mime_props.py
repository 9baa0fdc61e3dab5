"""Properties of the parse-once module: no input makes it raise, and offsets always make sense."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailboxes import mime
from mailboxes.mime import BodyPart, ParsedMessage
from mailserver.imap.render import bodystructure_bytes, envelope_bytes
from tests.unit.mime import samples

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SEEDS = [make() for make in samples.WELL_FORMED.values()]

# Bytes that matter to a MIME parser, so random input hits its edges often.
TOKENS = [b"\r\n", b"\n", b"\r", b"--", b":", b";", b"=", b'"', b"(", b")", b"<", b">", b"@",
          b",", b" ", b"\t", b"\x00", b"\xff", b"\xd6\xd0", b"=?", b"?=", b"?B?", b"?Q?",
          b"boundary=", b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
          b"Content-Type: message/rfc822\r\n\r\n", b"--b--", b"charset=gbk", b"*0*=", b"%D6"]

mime_bytes = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=12)),
                      max_size=60).map(b"".join)


@st.composite
def mutated(draw):
    """A well-formed sample with a few cuts, insertions or overwrites."""
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["cut", "insert", "overwrite", "truncate"]))
        if action == "cut":
            del raw[at:at + draw(st.integers(1, 40))]
        elif action == "insert":
            raw[at:at] = draw(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=8)))
        elif action == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            raw[at:at + len(chunk)] = chunk
        else:
            del raw[at:]
    return bytes(raw)


def check_offsets(part: BodyPart, lo: int, hi: int) -> None:
    """Every range lies inside its parent's, in order, and sizes match the ranges."""
    assert lo <= part.header_start <= part.body_start <= part.body_end <= hi
    assert part.size == part.body_end - part.body_start
    last = part.body_start
    for child in part.parts:
        assert child.header_start >= last
        check_offsets(child, part.body_start, part.body_end)
        last = child.body_end
    if part.message is not None:
        inner = part.message.body
        assert (inner.header_start, inner.body_end) == (part.body_start, part.body_end)
        check_offsets(inner, part.body_start, part.body_end)


def check(raw: bytes) -> None:
    m = mime._parse(raw)        # the real parser, without parse_message's safety net
    assert m.size == len(raw) and m.header_end == m.body.body_start
    check_offsets(m.body, 0, len(raw))
    assert m.body.header_start == 0 and m.body.body_end == len(raw)
    assert len(m.text) <= mime.MAX_TEXT_CHARS
    for a in m.attachments:
        assert mime.find_part(m.body, a.path) is not None
    for path, part in mime.iter_parts(m.body):
        assert mime.find_part(m.body, path) is part
    assert ParsedMessage.from_json(m.to_json()) == m
    assert bodystructure_bytes(m.body).startswith(b"(")
    assert envelope_bytes(m.envelope).startswith(b"(")


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes(raw):
    check(raw)


@SETTINGS
@given(mime_bytes)
def test_mime_shaped_bytes(raw):
    check(raw)


@SETTINGS
@given(mutated())
def test_mutated_messages(raw):
    check(raw)


_HINT_PIECES = st.sampled_from([b"charset=", b'CharSet = "', b"gbk", b"utf-8", b"big5", b"charsetcharset=", b"x",
                                b" ", b"\r\n", b"=", b'"', b"shift_jis", b"CHARSET", b"iso-2022-jp", b"\xff"])


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(st.lists(_HINT_PIECES, max_size=14).map(b"".join), st.integers(min_value=0, max_value=200))
def test_charset_hint_finds_what_the_case_insensitive_scan_finds(raw, end):
    """_charset_hint tries the pattern only where "charset" starts: the same answer as finditer over raw[:end]."""
    from mailboxes.charsets import codec_for
    from mailboxes.mime import _CHARSET_PARAM, _charset_hint

    def reference(limit: int) -> str | None:
        for m in _CHARSET_PARAM.finditer(raw, 0, limit):
            codec = codec_for(m.group(1).decode("ascii"))
            if codec not in (None, "utf-8"):
                return codec
        return None

    assert _charset_hint(raw, end) == reference(end)
    assert _charset_hint(raw) == reference(len(raw))
