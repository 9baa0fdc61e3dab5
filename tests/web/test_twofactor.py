"""The second factor over real HTTP: throttled code guesses, app passwords at the web still need the code, turning it off, what a half sign-in can reach."""

from __future__ import annotations

import re
import time

import pyotp

from mailboxes.secondfactor import SecondFactors

from .harness import PASSWORD, Browser, WebServer, csrf_of

_WRONG = ("000000", "111111", "222222", "333333", "444444", "555555")


async def _enrol(web: WebServer) -> pyotp.TOTP:
    async def go():
        sf = SecondFactors(web.mb.router.central)
        secret = await sf.begin(web.accounts["alice"].id)
        totp = pyotp.TOTP(secret)
        assert await sf.confirm(web.accounts["alice"].id, totp.at(time.time() - 30)) is not None
        return totp
    return await web.loop_run(go())


def _wrong(totp: pyotp.TOTP) -> list[str]:
    near = {totp.at(time.time() + 30 * k) for k in range(-2, 3)}
    return [c for c in _WRONG if c not in near]


async def _code(client: Browser, code: str):
    _, page = await client.get("/login/code")
    return await client.post("/login/code", {"csrf": csrf_of(page), "code": code})


async def test_code_guesses_are_throttled_like_passwords(tmp_path):
    web = WebServer(tmp_path, limits={"auth_failures": 3}).start()
    client = Browser(web.url)
    try:
        totp = await _enrol(web)
        r, _ = await client.sign_in()
        assert str(r.url).endswith("/login/code")
        for code in _wrong(totp)[:3]:
            r, _ = await _code(client, code)
            assert r.status == 401
        r, page = await _code(client, totp.now())
        assert r.status == 429 and 'role="alert"' in page  # even the right code, while throttled
        r, _ = await client.get("/mail", allow_redirects=False)
        assert r.status == 303
    finally:
        await client.close()
        web.stop()


async def test_app_passwords_at_the_web_still_need_the_code_and_turning_off_needs_proof(web, client):
    totp = await _enrol(web)
    app = await web.loop_run(web.mb.directory.add_app_password("alice@city.test", "phone"))
    # No pending sign-in: the code page sends back to the password.
    r, _ = await client.get("/login/code", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login"
    r, _ = await client.sign_in(password=app)
    assert str(r.url).endswith("/login/code")
    r, _ = await client.get("/settings/app-passwords", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login"
    r, _ = await _code(client, totp.now())
    assert r.status == 200 and str(r.url).endswith("/mail")
    # The secret and its QR code are not shown once in force.
    r, page = await client.get("/settings/two-factor")
    assert 'id="tf-secret"' not in page
    r, _ = await client.get("/settings/two-factor/qr.svg")
    assert r.status == 404
    # New recovery codes need a current code; the old ones then stop working.
    _, page = await client.get("/settings/two-factor")
    r, _ = await client.post("/settings/two-factor/recovery", {"csrf": csrf_of(page), "code": _wrong(totp)[0]})
    assert r.status == 403
    r, page = await client.post("/settings/two-factor/recovery", {"csrf": csrf_of(page),
                                                                  "code": totp.at(time.time() + 30)})
    assert r.status == 200
    fresh = re.findall(r"<li><code>([a-z2-7-]+)</code></li>", page)
    assert len(fresh) == 10
    for proof in ("wrong-password", app, _wrong(totp)[0]):
        _, page = await client.get("/settings/two-factor")
        r, _ = await client.post("/settings/two-factor/disable", {"csrf": csrf_of(page), "proof": proof})
        assert r.status == 403
    _, page = await client.get("/settings/two-factor")
    r, page = await client.post("/settings/two-factor/disable", {"csrf": csrf_of(page), "proof": fresh[0]})
    assert r.status == 200 and re.search(r'id="tf-begin"', page)
    # Off again: the password alone signs in, and mail clients may use it again.
    other = Browser(web.url)
    try:
        r, _ = await other.sign_in()
        assert str(r.url).endswith("/mail")
    finally:
        await other.close()
