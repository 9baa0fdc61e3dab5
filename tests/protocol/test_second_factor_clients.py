"""Accounts with a second factor: IMAP and SMTP refuse the account's own password (NO / 535 naming app passwords), app passwords work."""

from __future__ import annotations

import imaplib
import smtplib
from datetime import datetime, timezone

import pyotp
import pytest

from mailboxes.secondfactor import SecondFactors
from tests.protocol.imap.harness import PASSWORD, ImapServer


@pytest.fixture
def server(tmp_path):
    srv = ImapServer(tmp_path, whole_server=True).start()
    yield srv
    srv.stop()


async def _enrol(srv: ImapServer, name: str) -> str:
    """TOTP in force for the account; returns an app password made for it."""
    acct = srv.accounts[name]
    sf = SecondFactors(srv.mb.router.central)
    secret = await sf.begin(acct.id)
    assert await sf.confirm(acct.id, pyotp.TOTP(secret).at(datetime.now(timezone.utc))) is not None
    return await srv.mb.directory.add_app_password(acct.address, "Thunderbird")


def _imap_login(port: int, user: str, password: str) -> str:
    with imaplib.IMAP4("127.0.0.1", port) as c:
        try:
            c.login(user, password)
        except imaplib.IMAP4.error as exc:
            return str(exc)
        return "OK"


def _smtp_login(port: int, user: str, password: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.ehlo()
        try:
            c.login(user, password)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code, exc.smtp_error
        return 235, b""


def test_mail_clients_need_an_app_password_once_a_second_factor_is_on(server):
    submission = server.smtp.addresses["submission"][1]
    before = server.run(server.mb.directory.add_app_password("alice@city.test", "before"))
    # Without a second factor the account's own password works for mail clients.
    assert _imap_login(server.port, "alice@city.test", PASSWORD) == "OK"
    assert _smtp_login(submission, "alice@city.test", PASSWORD)[0] == 235
    app = server.run(_enrol(server, "alice"))
    said = _imap_login(server.port, "alice@city.test", PASSWORD)
    assert "AUTHENTICATIONFAILED" in said and "app password" in said
    code, text = _smtp_login(submission, "alice@city.test", PASSWORD)
    assert code == 535 and b"5.7.8" in text and b"app password" in text
    for pw in (app, before):
        assert _imap_login(server.port, "alice@city.test", pw) == "OK"
        assert _smtp_login(submission, "alice@city.test", pw)[0] == 235
    # A wrong password is still just wrong (says nothing about app passwords).
    said = _imap_login(server.port, "alice@city.test", "wrong")
    assert "AUTHENTICATIONFAILED" in said and "app password" not in said
    # Another account is not affected.
    assert _imap_login(server.port, "bob@city.test", PASSWORD) == "OK"
