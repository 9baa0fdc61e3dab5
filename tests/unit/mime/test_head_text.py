"""The search index's header text comes from the parse's own scan and equals header_lines of the top-level header."""

from __future__ import annotations

import pytest

from mailboxes.ingest import prepare
from mailboxes.mime import header_lines, parse_message
from tests.unit.mime.corpus_expected import CASES, load

EDGE = {
    "no blank line": b"From: a@b.test\r\nSubject: only a header",
    "folded": b"Subject: one\r\n two\r\nFrom: =?utf-8?q?J=C3=BCrgen?= <j@b.test>\r\n\r\nbody\r\n",
    # Raw 8-bit header; the only charset declared is a body part's: the header text reads the header alone.
    "charset in the body only": (b"Subject: caf\xe9\r\nMIME-Version: 1.0\r\n"
                                 b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                                 b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n--b--\r\n"),
    "charset in the header": (b"Subject: caf\xe9\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n"
                              b"caf\xe9\r\n"),
    "bare LF": b"From: a@b.test\nSubject: lf\n\nbody\n",
    "empty": b"",
}


@pytest.mark.parametrize("raw", [load(n) for n in sorted(CASES)] + list(EDGE.values()),
                         ids=[n.rsplit("/", 1)[-1] for n in sorted(CASES)] + list(EDGE))
def test_head_text_is_header_lines_of_the_top_level_header(raw):
    end = parse_message(raw).header_end
    assert prepare(raw).head_text == "\n".join(header_lines(raw[:end]))
