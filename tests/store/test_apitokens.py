"""JSON API bearer tokens in the central database, on SQLite and PostgreSQL: hashed secrets, scope, revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailboxes import apitokens
from mailboxes import schema as t
from mailboxes.apitokens import ApiTokens, token_hash
from mailboxes.events import Sources
from mailboxes.errors import InvalidInput, NotFound
from tests.support.clock import Clock


async def test_the_secret_is_stored_as_sha256_only_and_finds_its_token(mb):
    acct = await mb.add_account("admin@city.test", password="pw")
    clock = Clock()
    tokens = ApiTokens(mb.router.central, clock=clock)
    secret, tok = await tokens.create(acct.id, label="ops")
    assert secret.startswith("pr_") and len(secret) == 3 + 43  # 256 bits, unpadded URL-safe base64
    async with mb.router.central.read() as conn:
        stored = (await conn.execute(select(t.api_tokens.c.token_hash))).scalars().all()
    assert stored == [token_hash(secret)] and secret[3:].encode() not in stored[0]
    assert (await tokens.list())[0].last_used_at is None
    clock.now += timedelta(minutes=5)
    found = await tokens.find(secret)
    assert found is not None and found.id == tok.id and found.owner_id == acct.id and found.kind == "admin"
    assert found.department_id is None and found.label == "ops"
    assert (await tokens.list())[0].last_used_at == clock.now
    for bad in ("", "pr_", secret[:-1], secret[3:], "pr_" + "A" * 100, "pr_!!!!", secret + "A"):
        assert await tokens.find(bad) is None


async def test_a_revoked_token_is_never_found_again(mb):
    acct = await mb.add_account("admin@city.test", password="pw")
    tokens = ApiTokens(mb.router.central)
    secret, tok = await tokens.create(acct.id)
    other, _ = await tokens.create(acct.id)
    revoked = await tokens.revoke(tok.id)
    assert revoked.revoked_at is not None
    assert await tokens.find(secret) is None
    assert await tokens.find(other) is not None  # only that one
    assert (await tokens.revoke(tok.id)).revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(NotFound):
        await tokens.revoke(9999)


async def test_a_live_token_is_remembered_briefly_and_a_revocation_anywhere_ends_it(two_stores, monkeypatch):
    """Two stores on one database, as two processes: a token revoked through this process is refused at
    once; one revoked by the other process within CACHE_SECONDS, not at the next request (the cache)."""
    here, there, acct = two_stores
    now = [1000.0]
    monkeypatch.setattr(apitokens, "monotonic", lambda: now[0])
    tokens, elsewhere = ApiTokens(here.router.central), ApiTokens(there.router.central)
    secret, tok = await tokens.create(acct.id)
    assert (await tokens.find(secret)).id == tok.id
    await elsewhere.revoke(tok.id)  # another process: this one still has it for a moment
    assert (await tokens.find(secret)).id == tok.id
    now[0] += apitokens.CACHE_SECONDS
    assert await tokens.find(secret) is None  # read again: revoked
    secret2, tok2 = await tokens.create(acct.id)
    assert (await elsewhere.find(secret2)).id == tok2.id  # the other process remembers it now
    await ApiTokens(here.router.central).revoke(tok2.id)  # any ApiTokens of this process forgets at once
    assert await tokens.find(secret2) is None
    src, source_secret, _ = await Sources(here.router.central).add("oa")
    assert (await tokens.find(source_secret)).source_id == src.id
    await Sources(here.router.central).revoke("oa")
    assert await tokens.find(source_secret) is None


async def test_kind_scope_and_owner_filter(mb):
    dept = await mb.directory.add_department("tax", "税务处")
    a = await mb.add_account("a@city.test", password="pw", department="tax")
    tokens = ApiTokens(mb.router.central)
    secret, _ = await tokens.create(a.id, department_id=dept.id)
    src, _, _ = await Sources(mb.router.central).add("oa")  # a workflow system's token: a source, no owner
    assert (await tokens.find(secret)).department_id == dept.id
    assert [x.owner_id for x in await tokens.list(owner_id=a.id)] == [a.id]
    assert [x.source_id for x in await tokens.list() if x.kind == "source"] == [src.id]
    assert [x.kind for x in await tokens.list()] == ["admin", "source"]
    with pytest.raises(InvalidInput):
        await tokens.create(a.id, kind="root")
    with pytest.raises(InvalidInput):
        await tokens.create(a.id, kind="source")  # a source token belongs to a source
    with pytest.raises(InvalidInput):
        await tokens.create(None, source_id=src.id)  # an admin token to an account
    with pytest.raises(InvalidInput):
        await tokens.create(a.id, label="x" * 129)
