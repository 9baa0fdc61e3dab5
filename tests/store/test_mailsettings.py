"""Per-account mail settings in the central database, on SQLite and PostgreSQL: rules per account, the reply log, the active set."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from mailboxes.errors import InvalidInput, NotFound
from mailboxes.mailsettings import OutOfOffice

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)


async def test_once_per_sender_per_period_is_durable_and_race_free(mb):
    acct = await mb.add_account("li@city.test", password="pw")
    s = mb.settings
    assert await s.claim_reply(acct.id, "A@Outside.example", 7, T0)
    assert not await s.claim_reply(acct.id, "a@outside.example", 7, T0 + timedelta(days=6, hours=23))
    assert await s.claim_reply(acct.id, "a@outside.example", 7, T0 + timedelta(days=7))
    # Many at once for a new sender: exactly one wins.
    wins = await asyncio.gather(*(s.claim_reply(acct.id, "b@outside.example", 7, T0) for _ in range(8)))
    assert sum(wins) == 1
    # New out-of-office text: a new period for everybody.
    await s.set_out_of_office(acct.id, OutOfOffice(True, None, None, "", "away", 7))
    assert await s.claim_reply(acct.id, "b@outside.example", 7, T0)


async def test_rules_belong_to_their_account_and_keep_their_order(mb):
    li = await mb.add_account("li@city.test", password="pw")
    wang = await mb.add_account("wang@city.test", password="pw")
    s = mb.settings
    r1 = await s.add_rule(li.id, "from", "boss@", "folder", "Work")
    r2 = await s.add_rule(li.id, "subject", "紧急", "flag", "\\Flagged")
    r3 = await s.add_rule(li.id, "list-id", "news.example", "stop")
    assert [r.id for r in (await s.for_delivery([li]))[li.id].rules] == [r1.id, r2.id, r3.id]  # now cached
    await s.move_rule(li.id, r3.id, up=True)
    assert [r.id for r in await s.rules(li.id)] == [r1.id, r3.id, r2.id]
    assert [r.id for r in (await s.for_delivery([li]))[li.id].rules] == [r1.id, r3.id, r2.id]  # the cache follows
    await s.move_rule(li.id, r1.id, up=True)  # already first: nothing moves
    assert [r.id for r in await s.rules(li.id)] == [r1.id, r3.id, r2.id]
    with pytest.raises(NotFound):
        await s.remove_rule(wang.id, r1.id)
    with pytest.raises(NotFound):
        await s.move_rule(wang.id, r1.id, up=False)
    await s.remove_rule(li.id, r3.id)
    assert [r.id for r in await s.rules(li.id)] == [r1.id, r2.id] and await s.rules(wang.id) == []
    for bad in (("size", "x", "seen", ""), ("from", "", "seen", ""), ("from", "x", "delete", ""),
                ("from", "x", "folder", ""), ("from", "x", "flag", "two words"), ("from", "x", "flag", "\\Seen")):
        with pytest.raises(InvalidInput):
            await s.add_rule(li.id, *bad)


async def test_the_active_set_follows_changes_and_delivery_reads_settings_and_aliases(mb):
    li = await mb.add_account("li@city.test", password="pw")
    wang = await mb.add_account("wang@city.test", password="pw")
    await mb.directory.add_alias("office@city.test", "li@city.test")
    s = mb.settings
    assert await s.active() == frozenset()
    await s.set_signature(li.id, "Li")  # a signature alone does nothing at delivery
    assert await s.active() == frozenset()
    await s.set_out_of_office(li.id, OutOfOffice(True, T0, T0 + timedelta(days=2), "Away", "Back on Monday.", 3))
    await s.add_rule(wang.id, "from", "x", "seen")
    assert await s.active() == {li.id, wang.id}
    got = await s.for_delivery([li, wang])
    assert got[li.id].ooo.subject == "Away" and got[li.id].ooo.start == T0 and got[li.id].ooo.days == 3
    assert got[li.id].addresses == {"li@city.test", "office@city.test"} and got[li.id].rules == ()
    assert [r.field for r in got[wang.id].rules] == ["from"] and not got[wang.id].ooo.enabled
    await s.set_out_of_office(li.id, OutOfOffice(False, None, None, "", "", 7))
    assert await s.active() == {wang.id}
    assert await s.signature(li.id) == "Li"
    for bad in (OutOfOffice(True, None, None, "", "", 7), OutOfOffice(True, None, None, "", "x", 0),
                OutOfOffice(True, T0, T0, "", "x", 7), OutOfOffice(False, None, None, "s" * 256, "x", 7),
                OutOfOffice(True, None, None, "Away\r\nBcc: all@city.test", "x", 7)):
        with pytest.raises(InvalidInput):
            await s.set_out_of_office(li.id, bad)


async def test_deliveries_finding_the_active_set_expired_share_one_load(mb, monkeypatch):
    from sqlalchemy import event

    import mailboxes.mailsettings as mailsettings

    li = await mb.add_account("li@city.test", password="pw")
    s = mb.settings
    await s.add_rule(li.id, "from", "x", "seen")
    assert await s.active() == {li.id}
    loads = []
    engine = s.db.reader.sync_engine

    def counted(_conn, _cursor, statement, *_args):
        if "mail_rules" in statement and "UNION" in statement.upper():
            loads.append(statement)
    event.listen(engine, "before_cursor_execute", counted)
    try:
        monkeypatch.setattr(mailsettings, "ACTIVE_CACHE_SECONDS", -1.0)  # expired for every caller below
        got = await asyncio.gather(*(s.active() for _ in range(30)))
        assert got == [frozenset({li.id})] * 30 and len(loads) == 1
        # A change made here while a load is under way: that load's set is not kept, the next asks again.
        first = asyncio.ensure_future(s.active())
        await asyncio.sleep(0)
        wang = await mb.add_account("wang@city.test", password="pw")
        await s.add_rule(wang.id, "from", "y", "seen")  # forget()s the set
        await first
        monkeypatch.setattr(mailsettings, "ACTIVE_CACHE_SECONDS", 5.0)
        assert await s.active() == {li.id, wang.id}
        # A caller that goes away does not take the load from the others.
        monkeypatch.setattr(mailsettings, "ACTIVE_CACHE_SECONDS", -1.0)
        before = len(loads)
        leaving, staying = asyncio.ensure_future(s.active()), asyncio.ensure_future(s.active())
        await asyncio.sleep(0)
        leaving.cancel()
        assert await staying == {li.id, wang.id} and len(loads) == before + 1
    finally:
        event.remove(engine, "before_cursor_execute", counted)
