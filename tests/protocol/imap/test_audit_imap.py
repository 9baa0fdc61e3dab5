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
