"""Audit entries of IMAP LOGIN, success and failure (issue 13), never with the password."""

from __future__ import annotations

import imaplib
import json

import pytest

from .harness import PASSWORD


def test_imap_login_success_and_failure_are_audited(server):
    c = imaplib.IMAP4("127.0.0.1", server.port, timeout=30)
    with pytest.raises(imaplib.IMAP4.error):
        c.login("alice@city.test", "not-the-password-123")
    c.logout()
    c = imaplib.IMAP4("127.0.0.1", server.port, timeout=30)
    c.login("alice@city.test", PASSWORD)
    c.logout()

    async def entries() -> list[dict]:
        await server.mb.directory.audit_buffer.flush()
        return list(reversed(await server.mb.directory.audit_entries(limit=50, activity=True)))
    got = server.run(entries())
    logins = [(e["actor"], e["action"], e["target"]) for e in got if e["action"].startswith("login.")]
    assert logins == [("alice@city.test", "login.failed", "imap"), ("alice@city.test", "login.ok", "imap")]
    assert "not-the-password-123" not in json.dumps(got, default=str)


def test_reading_bodies_of_a_shared_folder_is_audited_once_per_message(server):
    from imapclient import IMAPClient

    from .harness import message
    owner = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    owner.login("bob@city.test", PASSWORD)
    owner.create_folder("Docs")
    for i in range(3):
        owner.append("Docs", message(f"shared {i}", f"body {i}", sender="bob@city.test"))
    owner.setacl("Docs", "alice@city.test", "lrs")
    owner.select_folder("Docs")
    owner.fetch([1, 2, 3], ["BODY.PEEK[]"])  # the owner's own reads are not audited
    reader = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    reader.login("alice@city.test", PASSWORD)
    reader.select_folder("Shared/bob@city.test/Docs")
    reader.fetch([1, 2, 3], ["FLAGS", "BODY.PEEK[HEADER]"])  # headers and flags are not a body read
    reader.fetch([1], ["BODY.PEEK[]"])
    reader.fetch([1, 2, 3], ["BODY.PEEK[]"])  # message 1 again in this session: not a second time
    reader.fetch([2], ["RFC822"])
    reader.logout()
    owner.logout()

    async def entries() -> list[dict]:
        await server.mb.directory.audit_buffer.flush()
        return list(reversed(await server.mb.directory.audit_entries(limit=50, activity=True)))
    reads = [e for e in server.run(entries()) if e["action"] == "mailbox.read"]
    assert [(e["actor"], e["target"]) for e in reads] == [("alice@city.test", "bob@city.test/Docs")] * 2, reads
    assert [json.loads(e["detail"])["uids"] for e in reads] == [[1], [2, 3]]
