"""Audit entries of SMTP AUTH (success and failure) and of every message sent through submit() (issue 13)."""

from __future__ import annotations

import json

import aiosmtplib
import pytest

from .support import PASSWORD, message


async def _entries(inst) -> list[dict]:
    await inst.mb.directory.audit_buffer.flush()
    return list(reversed(await inst.mb.directory.audit_entries(limit=100, activity=True)))


async def test_smtp_auth_success_and_failure_and_the_send_are_audited(city):
    port = city.port("submission")
    bad = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=True, validate_certs=False)
    await bad.connect()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await bad.login("zhang.wei@city.test", "wrong-password-xyz")
    await bad.quit()

    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=True, validate_certs=False,
                             username="zhang.wei@city.test", password=PASSWORD, local_hostname="pc.city.test")
    await client.connect()
    data = message("audited", to="li.na@city.test, x@remote.example")
    errors, _ = await client.sendmail("zhang.wei@city.test", ["li.na@city.test", "x@remote.example"], data)
    await client.quit()
    assert errors == {}

    entries = await _entries(city)
    logins = [(e["actor"], e["action"], e["target"]) for e in entries if e["action"].startswith("login.")]
    # aiosmtplib tries each offered mechanism (PLAIN, LOGIN): one failure entry per attempt.
    assert logins[-1] == ("zhang.wei@city.test", "login.ok", "smtp")
    assert logins[:-1] and set(logins[:-1]) == {("zhang.wei@city.test", "login.failed", "smtp")}
    sent = [e for e in entries if e["action"] == "message.sent"]
    assert len(sent) == 1
    msgid = data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
    assert sent[0]["actor"] == "zhang.wei@city.test" and sent[0]["target"] == msgid
    detail = json.loads(sent[0]["detail"])
    assert detail["recipients"] == 2 and detail["sender"] == "zhang.wei@city.test"
    # Never a password nor the body.
    everything = json.dumps(entries, default=str)
    assert "wrong-password-xyz" not in everything and PASSWORD not in everything and "Hello." not in everything
