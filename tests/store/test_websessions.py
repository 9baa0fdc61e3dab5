"""Webmail sessions in the central database, on SQLite and PostgreSQL: hashed secrets, expiry, sign-out everywhere."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from mailboxes import schema as t
from mailboxes.websessions import WebSessions, token_hash
from tests.support.clock import Clock


async def test_the_secret_is_stored_hashed_and_finds_its_session(mb):
    acct = await mb.add_account("li@city.test", password="pw")
    ws = WebSessions(mb.router.central)
    token, sess = await ws.create(acct.id, lifetime=timedelta(hours=1), user_agent="Firefox/1" + "x" * 500)
    assert len(token) == 43  # 256 bits in unpadded URL-safe base64
    async with mb.router.central.read() as conn:
        stored = (await conn.execute(select(t.web_sessions.c.token_hash))).scalars().all()
    assert stored == [token_hash(token)] and token.encode() not in stored[0]
    found = await ws.find(token)
    assert found is not None and found.id == sess.id and found.account_id == acct.id
    assert len(found.user_agent) == 255
    # Every other spelling of the last character (it carries 2 spare bits) is refused too.
    others = [token[:-1] + c for c in "AEIMQUYcgkosw048BF" if c != token[-1]]
    for bad in ("", "x", *others, token + "A" * 100, "!!!!"):
        assert await ws.find(bad) is None


async def test_sessions_expire_idle_and_absolute(mb):
    acct = await mb.add_account("li@city.test", password="pw")
    clock = Clock()
    ws = WebSessions(mb.router.central, clock=clock)
    token, sess = await ws.create(acct.id, lifetime=timedelta(minutes=30))
    clock.now += timedelta(minutes=20)
    sess = await ws.touch(sess, idle=timedelta(minutes=30), max_age=timedelta(minutes=60))
    clock.now += timedelta(minutes=20)  # 40 min after creation, 20 after the last use: alive
    assert await ws.find(token) is not None
    sess = await ws.touch(sess, idle=timedelta(minutes=30), max_age=timedelta(minutes=60))
    assert sess.expires_at == sess.created_at + timedelta(minutes=60)  # capped by the absolute lifetime
    clock.now += timedelta(minutes=21)
    assert await ws.find(token) is None
    assert await ws.purge_expired() == 1


async def test_sign_out_everywhere_ends_every_session_of_the_account_only(mb):
    a = await mb.add_account("a@city.test", password="pw")
    b = await mb.add_account("b@city.test", password="pw")
    ws = WebSessions(mb.router.central)
    ta1, sa1 = await ws.create(a.id, lifetime=timedelta(hours=1))
    ta2, _ = await ws.create(a.id, lifetime=timedelta(hours=1))
    tb, _ = await ws.create(b.id, lifetime=timedelta(hours=1))
    assert len(await ws.of_account(a.id)) == 2
    await ws.end(sa1.id)
    assert await ws.find(ta1) is None and await ws.find(ta2) is not None
    assert await ws.end_all(a.id) == 1
    assert await ws.find(ta2) is None and await ws.find(tb) is not None


async def test_a_session_made_on_one_node_is_seen_and_ended_on_another(two_stores):
    m1, m2, acct = two_stores
    token, _ = await WebSessions(m1.router.central).create(acct.id, lifetime=timedelta(hours=1))
    other = WebSessions(m2.router.central)
    sess = await other.find(token)
    assert sess is not None
    await other.end(sess.id)
    assert await WebSessions(m1.router.central).find(token) is None


async def test_removing_the_account_removes_its_sessions(mb):
    acct = await mb.add_account("gone@city.test", password="pw")
    ws = WebSessions(mb.router.central)
    token, _ = await ws.create(acct.id, lifetime=timedelta(hours=1))
    await mb.directory.remove_account("gone@city.test")
    assert await ws.find(token) is None
