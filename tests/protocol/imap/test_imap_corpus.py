"""The MIME corpus through real clients: APPENDed with imaplib, fetched as exact bytes with a raw client and parsed
by imapclient; every value is the hand-written expectation of tests/unit/mime/corpus_expected.py."""

from __future__ import annotations

import email.header
import imaplib
import urllib.parse

import pytest
from imapclient import IMAPClient

from tests.unit.mime.corpus_expected import CASES, load

from .harness import PASSWORD, Raw

NAMES = sorted(CASES)


def _append_all(server) -> None:
    c = imaplib.IMAP4("127.0.0.1", server.port, timeout=30)
    c.login("alice@city.test", PASSWORD)
    for name in NAMES:
        typ, data = c.append("INBOX", None, None, load(name))
        assert typ == "OK", (name, data)
    c.logout()


@pytest.mark.slow
def test_corpus_envelope_bodystructure_and_sections_on_the_wire(server):
    _append_all(server)
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    for seq, name in enumerate(NAMES, 1):
        want = CASES[name]
        untagged, tagged = c.cmd(b"f%d FETCH %d (ENVELOPE BODYSTRUCTURE)" % (seq, seq))
        assert tagged.startswith(b"f%d OK" % seq), tagged
        assert untagged == [b"* %d FETCH (ENVELOPE %s BODYSTRUCTURE %s)\r\n" % (
            seq, want["envelope"], want["bodystructure"])], name
        for spec, data in want["sections"].items():
            s = spec.encode()
            untagged, tagged = c.cmd(b"b FETCH %d BODY.PEEK[%s]" % (seq, s))
            assert untagged == [b"* %d FETCH (BODY[%s] {%d}\r\n%s)\r\n" % (seq, s, len(data), data)], (name, spec)
        for spec, data in want.get("binary", {}).items():
            untagged, tagged = c.cmd(b"b FETCH %d BINARY.PEEK[%s]" % (seq, spec.encode()))
            assert untagged == [b"* %d FETCH (BINARY[%s] {%d}\r\n%s)\r\n" % (seq, spec.encode(), len(data), data)]
    c.close()


def _decode(value: bytes) -> str:
    return str(email.header.make_header(email.header.decode_header(value.decode("ascii"))))


@pytest.mark.slow
def test_chinese_corpus_as_a_client_decodes_it(server):
    # what Thunderbird-like clients do with the wire values: RFC 2047 for names and subjects,
    # RFC 2231 for the merged filename* parameter
    _append_all(server)
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    c.login("alice@city.test", PASSWORD)
    c.select_folder("INBOX", readonly=True)
    gbk, forward = NAMES.index("cn_gbk_attachment.eml") + 1, NAMES.index("cn_gb2312_forward.eml") + 1
    got = c.fetch([gbk, forward], ["ENVELOPE", "BODYSTRUCTURE"])
    c.logout()
    env = got[gbk][b"ENVELOPE"]
    assert _decode(env.subject) == "关于2026年预算的通知"
    assert _decode(env.from_[0].name) == "张三" and _decode(env.to[0].name) == "李四"
    xls = got[gbk][b"BODYSTRUCTURE"][0][1]
    charset, _lang, octets = xls[8][1][1].decode().split("'", 2)
    assert urllib.parse.unquote(octets, encoding=charset) == "预算表.xls"
    assert _decode(xls[2][1]) == "预算表.xls"
    fwd = got[forward]
    assert fwd[b"ENVELOPE"].subject.decode("gb2312") == "Fw: 会议纪要"   # raw 8-bit, sent as a literal
    inner = fwd[b"BODYSTRUCTURE"][0][1]
    assert inner[:2] == (b"message", b"rfc822") and _decode(inner[7][1]) == "会议"  # the embedded envelope, a plain tuple here
    attachment = inner[8][1]  # imapclient leaves an embedded multipart as a flat tuple: parts, then subtype
    charset, _lang, octets = attachment[9][1][1].decode().split("'", 2)
    assert urllib.parse.unquote(octets, encoding=charset) == "\U00020000档案.txt"
