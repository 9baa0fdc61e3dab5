"""BODYSTRUCTURE and ENVELOPE through real clients: nested multiparts, message/rfc822, GBK bodies, RFC 2231 names."""

from __future__ import annotations

import email.header
import urllib.parse

import aioimaplib
import pytest
from imapclient import IMAPClient

from mailboxes.mime import parse_message
from mailserver.imap.render import bodystructure_bytes, envelope_bytes
from tests.unit.mime.samples import (
    GBK_BODY,
    GBK_FILENAME,
    GBK_SUBJECT,
    gbk_message,
    nested_message,
    rfc822_message,
)

from .harness import PASSWORD


def decode(value: bytes | None) -> str:
    return str(email.header.make_header(email.header.decode_header(value.decode("ascii"))))


@pytest.fixture
def fetched(server):
    for raw in (gbk_message(), nested_message(), rfc822_message()):
        server.deliver("alice", raw)
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    c.login("alice@city.test", PASSWORD)
    c.select_folder("INBOX")
    out = c.fetch([1, 2, 3], ["BODYSTRUCTURE", "BODY", "ENVELOPE", "BODY.PEEK[1]", "BINARY.PEEK[1]"])
    c.logout()
    return out


def test_gbk_message_with_rfc2231_file_name(fetched):
    bs = fetched[1][b"BODYSTRUCTURE"]
    assert bs.is_multipart and bs[1] == b"mixed" and bs[2] == (b"boundary", b"----=_NextPart_001")
    text, doc = bs[0]
    assert text[:3] == (b"text", b"plain", (b"charset", b"GBK")) and text[5] == b"base64"
    assert doc[:2] == (b"application", b"msword")
    disposition = doc[8]
    assert disposition[0] == b"attachment"
    name, value = disposition[1]
    assert name == b"filename*"  # RFC 2231 continuations merged into one extended value (as Dovecot)
    charset, _lang, pct = value.decode().split("'", 2)
    assert charset == "GBK" and urllib.parse.unquote(pct, encoding="gbk") == GBK_FILENAME
    assert decode(doc[2][1]) == GBK_FILENAME  # the RFC 2047 name= as well
    env = fetched[1][b"ENVELOPE"]
    assert decode(env.subject) == GBK_SUBJECT
    assert decode(env.from_[0].name) == "张三" and env.from_[0].mailbox == b"zhangsan"
    assert [a.mailbox for a in env.to] == [b"lisi", b"wangwu"] and decode(env.to[0].name) == "李四"
    assert fetched[1][b"BINARY[1]"].decode("gbk") == GBK_BODY  # RFC 3516: base64 removed
    assert fetched[1][b"BODY[1]"] != fetched[1][b"BINARY[1]"]


def test_nested_multipart(fetched):
    bs = fetched[2][b"BODYSTRUCTURE"]
    assert bs[1] == b"mixed"
    alternative, pdf = bs[0]
    assert alternative.is_multipart and alternative[1] == b"alternative"
    assert [p[:2] for p in alternative[0]] == [(b"text", b"plain"), (b"text", b"html")]
    assert pdf[:2] == (b"application", b"pdf") and pdf[8] == (b"attachment", (b"filename", b"report.pdf"))
    body = fetched[2][b"BODY"]  # RFC 3501 §7.4.2 BODY: no extension data
    assert body[1] == b"mixed" and len(body) == 2


def test_message_rfc822_part(fetched):
    bs = fetched[3][b"BODYSTRUCTURE"]
    text, forwarded = bs[0]
    assert text[:2] == (b"text", b"plain")
    assert forwarded[:2] == (b"message", b"rfc822")
    inner_env, inner_body = forwarded[7], forwarded[8]  # body-type-msg: envelope, body, lines
    assert inner_env[9] == b"<orig@example.cn>" and decode(inner_env[1]) == "原始邮件"
    assert decode(inner_env[2][0][0]) == "王五"
    # imapclient leaves nested bodies as plain tuples: (part, part, subtype, params, ...)
    assert inner_body[2] == b"mixed" and [p[:2] for p in inner_body[:2]] == [(b"text", b"plain"), (b"image", b"png")]
    assert inner_body[0][2] == (b"charset", b"gbk") and forwarded[9] == 18  # body-fld-lines


async def test_wire_bytes_are_the_stored_rendering(server):
    """What aioimaplib receives is exactly render.py's output for the stored parse (parse once)."""
    samples = [gbk_message(), nested_message(), rfc822_message()]
    await server.loop_run(server.deliver_many("alice", samples))
    client = aioimaplib.IMAP4(host="127.0.0.1", port=server.port, timeout=30)
    await client.wait_hello_from_server()
    await client.login("alice@city.test", PASSWORD)
    await client.select("INBOX")
    for i, raw in enumerate(samples, 1):
        resp = await client.fetch(str(i), "(BODYSTRUCTURE ENVELOPE)")
        assert resp.result == "OK"
        line = b"".join(x for x in resp.lines if isinstance(x, (bytes, bytearray)))
        parsed = parse_message(raw)
        assert b"BODYSTRUCTURE " + bodystructure_bytes(parsed.body, True) in line
        assert b"ENVELOPE " + envelope_bytes(parsed.envelope) in line
    await client.logout()
