"""Sign-in over real HTTP: cookie flags, sessions in the database, sign-out (here and everywhere), CSRF, security headers."""

from __future__ import annotations

import imaplib

import pytest
from sqlalchemy import select

from mailboxes import schema as t

from .harness import PASSWORD, Browser, WebServer, csrf_of


async def _sessions(web) -> list:
    async def rows():
        async with web.mb.router.central.read() as conn:
            return (await conn.execute(select(t.web_sessions.c.account_id, t.web_sessions.c.user_agent))).all()
    return await web.loop_run(rows())


@pytest.mark.slow
async def test_sign_in_sets_a_hardened_cookie_and_stores_the_session(web, client):
    r, page = await client.sign_in()
    assert r.status == 200 and str(r.url).endswith("/mail") and "alice@city.test" in page
    [hist] = r.history
    assert hist.status == 303
    cookie = hist.headers.getone("Set-Cookie")
    assert cookie.startswith("postroom-session=")
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP on loopback; over TLS see the test below
    [(account_id, ua)] = await _sessions(web)
    assert account_id == web.accounts["alice"].id and ua.startswith("Python")
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) == 43  # 256 bits; the table holds only its hash (tests/store/test_websessions.py)


async def test_over_tls_the_cookie_is_secure_and_host_prefixed(tmp_path):
    srv = WebServer(tmp_path, https=True).start()
    b = Browser(srv.https_url)
    try:
        r, page = await b.sign_in()
        assert r.status == 200 and "alice@city.test" in page
        cookie = r.history[0].headers.getone("Set-Cookie")
        assert cookie.startswith("__Host-postroom-session=")
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        assert {"secure", "httponly", "path=/"} <= flags and not any(f.startswith("domain") for f in flags)
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        await b.close()
        srv.stop()


@pytest.mark.slow
async def test_wrong_password_is_refused_and_makes_no_session(web, client):
    r, page = await client.sign_in(password="wrong")
    assert r.status == 401 and 'role="alert"' in page
    assert await _sessions(web) == []
    r, _ = await client.get("/mail", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login"


async def test_sign_out_ends_the_session_in_the_database(web, client):
    _, page = await client.sign_in()
    assert len(await _sessions(web)) == 1
    stolen = {c.key: c.value for c in client.session.cookie_jar}["postroom-session"]
    r, _ = await client.post("/logout", {"csrf": csrf_of(page)})
    assert r.status == 200 and str(r.url).endswith("/login")
    assert await _sessions(web) == []
    # A copy of the old cookie signs nobody in any more.
    other = Browser(web.url)
    try:
        other.session.cookie_jar.update_cookies({"postroom-session": stolen})
        r, _ = await other.get("/mail", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login"
    finally:
        await other.close()


async def test_sign_out_everywhere_ends_the_other_browsers_sessions(web, client):
    second = Browser(web.url)
    try:
        await second.sign_in()
        _, page = await client.sign_in()
        assert len(await _sessions(web)) == 2
        await client.post("/logout-everywhere", {"csrf": csrf_of(page)})
        assert await _sessions(web) == []
        r, _ = await second.get("/mail", allow_redirects=False)
        assert r.status == 303
    finally:
        await second.close()


async def test_state_changing_requests_without_the_sessions_csrf_token_are_refused(web, client):
    _, page = await client.sign_in()
    token = csrf_of(page)
    web.deliver("alice", b"From: c@city.test\r\nTo: alice@city.test\r\nSubject: x\r\n\r\nbody\r\n")
    for path, data in (("/logout", {}), ("/logout-everywhere", {}), ("/lang", {"lang": "en"}),
                       ("/message/action", {"folder": "INBOX", "uid": "1", "do": "flag"})):
        for bad in ({}, {"csrf": ""}, {"csrf": token[:-1] + ("1" if token[-1] == "0" else "0")}, {"csrf": "x" * 64}):
            r, _ = await client.post(path, {**data, **bad}, allow_redirects=False)
            assert r.status == 403, (path, bad)
    # The other browser's token is not this session's token either.
    second = Browser(web.url)
    try:
        _, other_page = await second.sign_in()
        r, _ = await client.post("/logout-everywhere", {"csrf": csrf_of(other_page)}, allow_redirects=False)
        assert r.status == 403
    finally:
        await second.close()
    assert len(await _sessions(web)) == 2  # nothing was signed out
    flags = web.run(web.mb.store.messages((await web.loop_run(web.mb.store.folder(web.accounts["alice"], "INBOX"))).ref))
    assert flags[0].flags == 0
    # With the token in the header instead of the form, it passes.
    r, _ = await client.post("/logout", {}, headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert r.status == 303


async def test_sign_in_itself_needs_the_browsers_pre_session_token(web, client):
    r, _ = await client.post("/login", {"address": "alice@city.test", "password": PASSWORD}, allow_redirects=False)
    assert r.status == 403
    assert await _sessions(web) == []


async def test_a_session_cookie_planted_before_sign_in_is_not_the_one_after(web, client):
    """Session fixation: signing in always makes a new secret and ends the old session."""
    await client.sign_in()
    before = {c.key: c.value for c in client.session.cookie_jar}["postroom-session"]
    _, page = await client.get("/login")  # signed in: redirected to the list, which has a token
    r, _ = await client.post("/login", {"csrf": csrf_of(page), "address": "alice@city.test", "password": PASSWORD})
    after = {c.key: c.value for c in client.session.cookie_jar}["postroom-session"]
    assert after != before and len(await _sessions(web)) == 1
    victim = Browser(web.url)
    try:
        victim.session.cookie_jar.update_cookies({"postroom-session": before})
        r, _ = await victim.get("/mail", allow_redirects=False)
        assert r.status == 303
    finally:
        await victim.close()


async def test_every_page_carries_the_security_headers(web, client):
    for path in ("/login", "/static/style.css"):
        r, _ = await client.get(path)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
    r, _ = await client.get("/login")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert r.headers["X-Frame-Options"] == "DENY"


async def test_failed_web_sign_ins_count_for_imap_too(tmp_path):
    """One throttle: failures on the web throttle the same account over IMAP."""
    srv = WebServer(tmp_path, limits={"auth_failures": 3}).start()
    b = Browser(srv.url)
    try:
        for _ in range(3):
            r, _ = await b.sign_in(password="wrong")
            assert r.status == 401
        r, page = await b.sign_in()  # the right password, now throttled on the web as well
        assert r.status == 429
        imap = imaplib.IMAP4("127.0.0.1", srv.port, timeout=30)
        try:
            try:
                imap.login("alice@city.test", PASSWORD)
                raise AssertionError("IMAP login was not throttled")
            except imaplib.IMAP4.error as exc:
                assert "UNAVAILABLE" in str(exc) or "too many" in str(exc).lower(), exc
        finally:
            imap.shutdown()
    finally:
        await b.close()
        srv.stop()


async def test_disabling_the_account_ends_its_web_sessions_at_once(web, client):
    await client.sign_in()
    r, _ = await client.get("/mail", allow_redirects=False)
    assert r.status == 200
    await web.loop_run(web.mb.directory.set_enabled("alice@city.test", False))
    r, _ = await client.get("/mail", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login"
