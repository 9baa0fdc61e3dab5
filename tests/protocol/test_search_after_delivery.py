"""Mail is found by SEARCH as soon as its 250 has come, though the search indexes take it later (indexer.py).

The whole server (SMTP, IMAP) runs in its own thread; the clients are smtplib and imaplib. The
background indexer is made to wait for a pause that never comes, so every body a search finds
was indexed by that search's own catch-up.
"""

from __future__ import annotations

import imaplib
import smtplib

import pytest
from sqlalchemy import func, select

from mailboxes import indexer
from mailboxes import schema as t
from tests.protocol.imap.harness import PASSWORD, ImapServer


@pytest.fixture
def whole(tmp_path, monkeypatch):
    monkeypatch.setattr(indexer, "IDLE", 3600.0)
    srv = ImapServer(tmp_path, whole_server=True).start()
    yield srv
    srv.stop()


def pending(srv: ImapServer) -> int:
    async def count() -> int:
        async with srv.mb.router.central.read() as conn:
            return (await conn.execute(select(func.count()).select_from(t.blob_index_pending))).scalar()
    return srv.run(count())


def test_imap_search_finds_a_message_the_moment_smtp_has_accepted_it(whole):
    port = whole.smtp.addresses["smtp"][1]
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        for i, (subject, body) in enumerate([("Quarterly figures", "see asdfghjkl inside"),
                                             ("税务通知", "请于本周五前提交申报表。"), ("Lunch", "noodles")]):
            s.sendmail("carol@other.example", ["alice@city.test"],
                       (f"From: carol@other.example\r\nTo: alice@city.test\r\nSubject: {subject}\r\n"
                        f"Message-ID: <m{i}@other.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                        f"{body}\r\n").encode())
    assert pending(whole) == 3  # accepted, not indexed yet
    c = imaplib.IMAP4("127.0.0.1", whole.port, timeout=60)
    try:
        c.login("alice@city.test", PASSWORD)
        c.select("INBOX", readonly=True)
        assert c.search(None, "BODY", "sdfghjk") == ("OK", [b"1"])  # a substring (the trigram index)
        assert pending(whole) == 0
        c.literal = "申报".encode()  # sent as a literal after BODY
        assert c.search("UTF-8", "BODY") == ("OK", [b"2"])
        assert c.search(None, "TEXT", "noodle") == ("OK", [b"3"])
        assert c.search(None, "TEXT", "figures") == ("OK", [b"1"])
    finally:
        c.logout()
