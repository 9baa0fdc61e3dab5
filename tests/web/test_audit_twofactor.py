"""The webmail's second factor at sign-in writes its audit entries (issue 13): a right code, a wrong one, a throttled guess; never the code."""

from __future__ import annotations

import json

from .harness import Browser, WebServer
from .test_twofactor import _code, _enrol, _wrong


async def test_totp_successes_failures_and_throttled_guesses_are_audited(tmp_path):
    web = WebServer(tmp_path, limits={"auth_failures": 3}).start()
    client = Browser(web.url)
    try:
        totp = await _enrol(web)
        wrong = _wrong(totp)
        r, _ = await client.sign_in()
        assert str(r.url).endswith("/login/code")
        r, _ = await _code(client, wrong[0])
        assert r.status == 401
        right = totp.now()
        r, _ = await _code(client, right)
        assert r.status == 200 and str(r.url).endswith("/mail")
        other = Browser(web.url)  # a second sign-in, from another browser
        try:
            await other.sign_in()
            for code in wrong[1:3]:
                r, _ = await _code(other, code)
                assert r.status == 401
            r, _ = await _code(other, totp.now())
            assert r.status == 429  # three failures: throttled, even the right code
        finally:
            await other.close()

        async def entries() -> list[dict]:
            await web.mb.directory.audit_buffer.flush()
            return list(reversed(await web.mb.directory.audit_entries(50, activity=True)))
        got = web.run(entries())
        totp_entries = [(e["actor"], e["action"], e["target"]) for e in got if e["action"].startswith("login.totp")]
        assert totp_entries == [("alice@city.test", a, "webmail") for a in (
            "login.totp.failed", "login.totp.ok", "login.totp.failed", "login.totp.failed", "login.totp.throttled")]
        details = json.dumps([e["detail"] for e in got])
        assert right not in details and not any(w in details for w in wrong[:3])  # codes are never written
    finally:
        await client.close()
        web.stop()
