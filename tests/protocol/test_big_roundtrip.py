"""Whole paths at once on one running server: a 12 MB message SMTP -> IMAP and out through the queue; a raw GBK header.

The server is the whole composition root (SMTP, queue, IMAP) in its own
thread; the remote side is an aiosmtpd peer on loopback that the route for
remote.test points at. Clients are smtplib and imaplib, run in threads.
"""

from __future__ import annotations

import asyncio
import imaplib
import random
import smtplib

import pytest

from delivery import dkim
from delivery.worker import Worker
from tests.protocol.imap.harness import PASSWORD, ImapServer, Raw
from tests.protocol.smtp.fakenet import Peer

BIG = 12 * 1024 * 1024
TRACE_FIELDS = (b"Return-Path:", b"Received:", b"Authentication-Results:", b"DKIM-Signature:")


def big_message(sender: str, to: str, size: int = BIG) -> bytes:
    """Lines of every kind the DATA reader and the IMAP literal writer must keep: dots, 8-bit, long, empty."""
    rng = random.Random(20261204)
    head = (f"From: {sender}\r\nTo: {to}\r\nSubject: the annual report, 12 MB\r\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0800\r\nMessage-ID: <big.{rng.getrandbits(32)}@other.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            "\r\n").encode()
    kinds = [b".", b"..leading dots", b". a dot and a space", "年度报告 第%d行".encode(), b"", b"x" * 998,
             b"\tindented", b"From the start of a line", b"plain text line %d"]
    lines, total = [], len(head)
    while total < size:
        line = rng.choice(kinds)
        if b"%d" in line:
            line = line % len(lines)
        lines.append(line)
        total += len(line) + 2
    return head + b"\r\n".join(lines) + b"\r\n"


def trace_of(stored: bytes, original: bytes) -> list[bytes]:
    """The fields added above the original bytes, which must be a suffix of what was stored."""
    assert stored.endswith(original), "the original bytes are not kept whole"
    added = stored[:-len(original)]
    names = [line.split(b":", 1)[0] + b":" for line in added.split(b"\r\n") if line and line[:1] not in b" \t"]
    assert all(n in TRACE_FIELDS for n in names), names
    return names


@pytest.fixture
def whole(tmp_path):
    srv = ImapServer(tmp_path, whole_server=True, limits={"max_message_size": 20 * 1024 * 1024}).start()
    yield srv
    srv.stop()


def parts_of(srv: ImapServer) -> Worker:
    return next(s for s in srv.services if isinstance(s, Worker))


def smtp_send(port: int, sender: str, rcpts: list[str], data: bytes, *, login: str | None = None) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as s:
        s.ehlo("pc.other.example")
        if login:
            s.login(login, PASSWORD)  # plaintext AUTH on loopback, as the harness allows
        return s.sendmail(sender, rcpts, data, mail_options=["BODY=8BITMIME"])


def imap_fetch_all(port: int, user: str) -> list[tuple[bytes, bytes]]:
    """(RFC822.SIZE line, BODY[]) of every message in INBOX, with imaplib."""
    c = imaplib.IMAP4("127.0.0.1", port, timeout=120)
    try:
        c.login(user, PASSWORD)
        c.select("INBOX", readonly=True)
        typ, data = c.fetch("1:*", "(RFC822.SIZE BODY.PEEK[])")
        assert typ == "OK"
        return [(part[0], part[1]) for part in data if isinstance(part, tuple)]
    finally:
        c.logout()


@pytest.mark.slow  # about 15 s on a shared machine; `make test` runs it
async def test_12_mb_byte_exact_from_smtp_to_imap_and_out_through_the_queue(whole, tmp_path):
    peer = await Peer(ip="127.0.0.14", cert_dir=tmp_path).start()
    try:
        worker = parts_of(whole)
        whole.run(worker.outbound.routes.add("remote.test", f"{peer.ip}:{peer.port}"))
        whole.run(whole.mb.directory.add_alias("forward@city.test", "ann@remote.test"))
        _, txt = whole.run(worker.submitter.keys.generate("city.test", "big2026", 1024))
        smtp = whole.smtp.addresses["smtp"][1]

        # In from outside: stored for alice and, through the alias, queued for the peer.
        inbound = big_message("carol@other.example", "alice@city.test")
        assert len(inbound) >= BIG
        assert await asyncio.to_thread(smtp_send, smtp, "carol@other.example",
                                       ["alice@city.test", "forward@city.test"], inbound) == {}
        [(size_line, body)] = await asyncio.to_thread(imap_fetch_all, whole.port, "alice@city.test")
        assert trace_of(body, inbound) == [b"Return-Path:", b"Received:", b"Authentication-Results:"]
        assert b"RFC822.SIZE %d " % len(body) in size_line  # the size announced is the size sent

        await asyncio.wait_for(peer.arrived.wait(), 120)
        [forwarded] = peer.received
        assert forwarded.rcpts == ["ann@remote.test"] and "BODY=8BITMIME" in forwarded.mail_options
        assert trace_of(forwarded.data, inbound) == [b"Received:", b"Authentication-Results:"]
        assert forwarded.data[:-len(inbound)] == body[body.index(b"Received:"):-len(inbound)]

        # Out from alice by submission: signed, queued, delivered; the signature verifies over 12 MB.
        peer.arrived.clear()
        outbound = big_message("alice@city.test", "ann@remote.test")
        sub = whole.smtp.addresses["submission"][1]
        assert await asyncio.to_thread(smtp_send, sub, "alice@city.test", ["ann@remote.test"], outbound,
                                       login="alice@city.test") == {}
        await asyncio.wait_for(peer.arrived.wait(), 120)
        sent = peer.received[1]
        assert trace_of(sent.data, outbound) == [b"DKIM-Signature:", b"Received:"]
        result = await asyncio.to_thread(dkim.verify, sent.data, {("city.test", "big2026"): txt})
        assert (result.result, result.domain) == ("pass", "city.test"), result
    finally:
        await peer.stop()


def test_a_raw_gbk_header_over_smtp_is_kept_in_envelope_and_found_by_search(whole):
    subject, name = "关于召开年度工作会议的通知", "张伟"
    raw = (b"From: " + name.encode("gbk") + b" <zhang@other.example>\r\nTo: alice@city.test\r\nSubject: "
           + subject.encode("gbk") + b"\r\nDate: Mon, 02 Nov 2026 10:00:00 +0800\r\n"
           b"Message-ID: <gbk@other.example>\r\n\r\n" + "正文".encode("gbk") + b"\r\n")
    assert smtp_send(whole.smtp.addresses["smtp"][1], "zhang@other.example", ["alice@city.test"], raw) == {}
    c = Raw(whole.port, login="alice@city.test")
    try:
        assert c.cmd(b"a SELECT INBOX")[1].startswith(b"a OK")
        # ENVELOPE gives the header's own octets (RFC 3501 §7.4.2: not decoded), 8-bit, so as literals.
        gbk_subject, gbk_name = subject.encode("gbk"), name.encode("gbk")
        [envelope], _ = c.cmd(b"b FETCH 1 (ENVELOPE)")
        assert envelope == (b'* 1 FETCH (ENVELOPE ("Mon, 02 Nov 2026 10:00:00 +0800" {%d}\r\n%s'
                            % (len(gbk_subject), gbk_subject)
                            + b" (({4}\r\n%s NIL \"zhang\" \"other.example\"))" % gbk_name * 3
                            + b' ((NIL NIL "alice" "city.test")) NIL NIL NIL "<gbk@other.example>"))\r\n')

        def search(key: bytes, text: str) -> list[bytes]:
            u = text.encode()
            untagged, tagged = c.cmd(b"s SEARCH CHARSET UTF-8 " + key + b" {%d+}\r\n" % len(u) + u)
            assert tagged.startswith(b"s OK"), tagged
            return untagged

        # SEARCH reads the undeclared 8-bit header as GB18030 (mailboxes.charsets' CJK-first guess).
        assert search(b"SUBJECT", "年度工作会议") == [b"* SEARCH 1\r\n"]
        assert search(b"FROM", name) == [b"* SEARCH 1\r\n"]
        assert search(b"BODY", "正文") == [b"* SEARCH 1\r\n"]
        assert search(b"SUBJECT", "年终总结") == [b"* SEARCH\r\n"]
    finally:
        c.close()
