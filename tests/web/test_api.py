"""The JSON API over real HTTP: bearer tokens only (never the session cookie), revocation, admin role, problem details."""

from __future__ import annotations

import aiohttp
import pytest
from sqlalchemy import update

from mailboxes import schema as t
from mailboxes.apitokens import ApiTokens


@pytest.fixture
def web(web_on_both):
    return web_on_both  # every test on SQLite and on PostgreSQL (tokens, their revocation and throttle)


def _token(web, address: str, *, admin: bool) -> tuple[str, int]:
    async def go():
        d = web.mb.directory
        acct = await d.account(address)
        if admin:
            async with web.mb.router.central.write() as conn:
                await conn.execute(update(t.accounts).where(t.accounts.c.id == acct.id).values(role="admin"))
        secret, tok = await ApiTokens(web.mb.router.central).create(acct.id, label="test")
        return secret, tok.id
    return web.run(go())


async def _get(web, path: str, **headers) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as s, s.get(web.url + path, headers=headers) as r:
        return r.status, r.content_type, await r.json(content_type=None)


def _bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


async def test_an_admin_token_lists_and_gets_accounts_until_revoked(web):
    secret, tid = _token(web, "alice@city.test", admin=True)
    status, _, body = await _get(web, "/api/v1/accounts?q=bob", **_bearer(secret))
    assert status == 200 and [a["address"] for a in body["items"]] == ["bob@city.test"]
    status, _, body = await _get(web, "/api/v1/accounts/bob@city.test", **_bearer(secret))
    assert status == 200 and body["address"] == "bob@city.test" and body["role"] == "user"
    status, ctype, body = await _get(web, "/api/v1/accounts/nobody@city.test", **_bearer(secret))
    assert (status, ctype, body["status"]) == (404, "application/problem+json", 404)
    status, ctype, body = await _get(web, "/api/v1/accounts?limit=0", **_bearer(secret))
    assert (status, ctype, body["field"]) == (400, "application/problem+json", "limit")
    web.run(ApiTokens(web.mb.router.central).revoke(tid))
    status, ctype, body = await _get(web, "/api/v1/accounts", **_bearer(secret))
    assert (status, ctype, body["status"]) == (401, "application/problem+json", 401)


@pytest.mark.slow
async def test_no_token_a_bad_token_or_a_session_cookie_alone_is_refused(web, client):
    for headers in ({}, _bearer("pr_" + "A" * 43), {"Authorization": "Basic YWxpY2U6eA=="}):
        status, ctype, _ = await _get(web, "/api/v1/accounts", **headers)
        assert (status, ctype) == (401, "application/problem+json")
    _token(web, "alice@city.test", admin=True)
    await client.sign_in()  # an admin's signed-in browser: its cookie does not authenticate API calls
    r, text = await client.get("/api/v1/accounts")
    assert r.status == 401 and r.content_type == "application/problem+json"


async def test_a_non_admin_token_is_forbidden(web):
    secret, _ = _token(web, "bob@city.test", admin=False)
    status, ctype, body = await _get(web, "/api/v1/accounts", **_bearer(secret))
    assert (status, ctype, body["status"]) == (403, "application/problem+json", 403)


async def test_bad_tokens_are_throttled_per_client_address(web):
    from webmail.api import MAX_BAD_TOKENS

    secret, _ = _token(web, "alice@city.test", admin=True)
    for _ in range(MAX_BAD_TOKENS):
        assert (await _get(web, "/api/v1/accounts", **_bearer("pr_guess")))[0] == 401
    status, ctype, body = await _get(web, "/api/v1/accounts", **_bearer(secret))
    assert (status, ctype, body["status"]) == (429, "application/problem+json", 429)
