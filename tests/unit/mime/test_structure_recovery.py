"""Broken structures real mail has: a multipart reusing its parent's boundary, a multipart without a boundary."""

from __future__ import annotations

import pytest

from mailboxes.mime import BodyPart, find_part, iter_parts, parse_message, section_range
from mailserver.imap.render import bodystructure_bytes
from tests.unit.mime.samples import reused_boundary_message


def shape(part: BodyPart):
    return (part.content_type, [shape(c) for c in part.parts]) if part.parts else part.content_type


def test_reused_boundary_keeps_the_attachment():
    # RFC 2046 §5.1.2 forbids the reuse; Dovecot's reading (the newest multipart owns the delimiter
    # lines until its close delimiter) gives mixed(alternative(plain, html), pdf).
    raw = reused_boundary_message()
    m = parse_message(raw)
    assert shape(m.body) == ("multipart/mixed", [("multipart/alternative", ["text/plain", "text/html"]),
                                                 "application/pdf"])
    body = lambda path: raw[slice(*section_range(m.body, path))]  # noqa: E731
    assert body((1, 1)) == b"See the minutes."
    assert body((1, 2)) == b"<p>See the minutes.</p>"
    assert body((2,)) == b"JVBERi0xLjQK"
    # the inner multipart runs to its close delimiter line; the CRLF before the parent's next
    # delimiter belongs to that delimiter (RFC 2046 §5.1.1), the one before it is the close line's
    inner = body((1,))
    assert inner.startswith(b"--B_3201\r\nContent-Type: text/plain") and inner.endswith(b"</p>\r\n--B_3201--\r\n")
    assert [(a.path, a.filename) for a in m.attachments] == [((2,), "minutes.pdf")]
    assert b'"application" "pdf"' in bodystructure_bytes(m.body)


def test_reused_boundary_twice_and_a_missing_inner_close():
    raw = (b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
           b"--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
           b"--x\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n"
           b"--x\r\n\r\none\r\n--x--\r\n"
           b"--x\r\n\r\ntwo\r\n--x--\r\n"
           b"--x\r\n\r\nthree\r\n")   # no close delimiter at all: the last part runs to the end
    m = parse_message(raw)
    assert shape(m.body) == ("multipart/mixed", [
        ("multipart/mixed", [("multipart/alternative", ["text/plain"]), "text/plain"]), "text/plain"])
    texts = [raw[p.body_start:p.body_end] for _, p in iter_parts(m.body) if not p.is_multipart]
    assert texts == [b"one", b"two", b"three\r\n"]


def test_dovecot_duplicate_boundary_vector():
    # Dovecot's test-message-parser "duplicate mime boundary": two parts below the root, the text inside
    raw = (b'Content-Type: multipart/mixed; boundary="a"\n\n--a\n'
           b'Content-Type: multipart/mixed; boundary="a"\n\n--a\nContent-Type: text/plain\n\nbody\n')
    m = parse_message(raw)
    assert shape(m.body) == ("multipart/mixed", [("multipart/mixed", ["text/plain"])])
    assert raw[slice(*section_range(m.body, (1, 1)))] == b"body\n"


def test_nested_reuse_is_bounded():
    # every child reuses the boundary: nesting stops at MAX_DEPTH and parts at MAX_PARTS, no blow-up
    raw = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
           + b"--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" * 3000 + b"--b--\r\n" * 10)
    m = parse_message(raw)
    assert 0 < sum(1 for _ in iter_parts(m.body)) <= 2000


def test_empty_part_of_a_multipart_without_boundary():
    # RFC 3501 has no syntax for a multipart without parts: BODYSTRUCTURE shows one empty text/plain
    # part of size 0, so BODY[1] is that empty part (""), and nothing deeper exists.
    raw = b"Subject: x\r\nContent-Type: multipart/mixed\r\n\r\nhello\r\n"
    m = parse_message(raw)
    assert bodystructure_bytes(m.body).startswith(b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0')
    start, end = section_range(m.body, (1,))
    assert start == end == m.body.body_start
    assert section_range(m.body, (1,), "MIME") == (start, start)
    assert find_part(m.body, (2,)) is None and find_part(m.body, (1, 1)) is None
    assert raw[slice(*section_range(m.body, (), "TEXT"))] == b"hello\r\n"   # the text is still there


def _tree(draw, depth: int, parent: str) -> bytes:
    from hypothesis import strategies as st

    kind = draw(st.sampled_from(["leaf", "leaf", "multi"] if depth < 4 else ["leaf"]))
    if kind == "leaf":
        return b"Content-Type: text/plain\r\n\r\n" + draw(st.sampled_from([b"a", b"", b"x\r\ny", b"--z"]))
    boundary = draw(st.sampled_from([parent, "q", "r"]))   # often the parent's own boundary
    children = [_tree(draw, depth + 1, boundary) for _ in range(draw(st.integers(0, 3)))]
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + c + b"\r\n" for c in children)
    close = b"--" + boundary.encode() + b"--\r\n" if draw(st.booleans()) else b""
    return (b"Content-Type: multipart/mixed; boundary=" + boundary.encode() + b"\r\n\r\n" + body + close)


def _nested_within(part: BodyPart, lo: int, hi: int) -> None:
    assert lo <= part.header_start <= part.body_start <= part.body_end <= hi
    for child in part.parts:
        _nested_within(child, part.body_start, part.body_end)
    ends = [(c.header_start, c.body_end) for c in part.parts]
    assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:]))   # siblings in order, never overlapping


@pytest.mark.slow
def test_reused_boundaries_keep_parts_nested_and_in_order():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def check(data):
        raw = _tree(data.draw, 0, "p")
        m = parse_message(raw)
        _nested_within(m.body, 0, len(raw))

    check()
