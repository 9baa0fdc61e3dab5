"""Webmail sign-in, success and failure, writes its audit entry (issue 13), never with the password."""

from __future__ import annotations

import json


async def test_webmail_sign_in_success_and_failure_are_audited(web, client):
    await client.sign_in("alice@city.test", "wrong-web-password")
    r, _ = await client.sign_in("alice@city.test")
    assert r.status == 200

    async def entries() -> list[dict]:
        await web.mb.directory.audit_buffer.flush()
        return list(reversed(await web.mb.directory.audit_entries(20, activity=True)))
    got = web.run(entries())
    logins = [(e["actor"], e["action"]) for e in got if e["action"].startswith("login.")]
    assert logins == [("alice@city.test", "login.failed"), ("alice@city.test", "login.ok")]
    assert {e["target"] for e in got if e["action"].startswith("login.")} == {"webmail"}
    assert "wrong-web-password" not in json.dumps(got, default=str)
