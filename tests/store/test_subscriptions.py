"""Subscriptions as names and \\Recent claimed in the folder row, on SQLite and PostgreSQL; the mai0003 upgrade with data."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from mailboxes import errors, migrations
from mailboxes import store as store_mod
from mailboxes.db import open_database
from mailboxes.ingest import prepare
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER
from tests.store.test_store import make_message

PROVISIONED = ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]


async def test_provisioned_folders_are_subscribed_create_subscribes_nothing(mb):
    a = await mb.add_account("a@city.test", password="pw")
    assert await mb.store.subscriptions(a) == PROVISIONED
    await mb.store.provision(a)  # idempotent
    await mb.store.create_folder(a, "Work/Reports")
    assert await mb.store.subscriptions(a) == PROVISIONED


async def test_subscriptions_are_names_that_outlive_delete_and_move_with_rename(mb):
    a = await mb.add_account("a@city.test", password="pw")
    b = await mb.add_account("b@city.test", password="pw")
    await mb.store.create_folder(a, "Old/Sub")
    await mb.store.subscribe(a, "Old/Sub")
    await mb.store.subscribe(a, "Old/Sub")  # idempotent
    await mb.store.subscribe(a, "Shared/b@city.test/Docs")  # a shared folder is a name too
    await mb.store.subscribe(a, "inbox/x")  # INBOX (any case) is INBOX
    await mb.store.rename_folder(a, "Old", "New")  # the subscription goes along, as Dovecot moves it
    assert "New/Sub" in await mb.store.subscriptions(a) and "Old/Sub" not in await mb.store.subscriptions(a)
    await mb.store.delete_folder(a, "New/Sub")
    assert "New/Sub" in await mb.store.subscriptions(a)  # RFC 3501 §6.3.6: never removed by the server
    assert {"Shared/b@city.test/Docs", "INBOX/x"} <= set(await mb.store.subscriptions(a))
    assert await mb.store.subscriptions(b) == PROVISIONED  # per account
    await mb.store.subscribe(a, "New/Sub", False)
    await mb.store.subscribe(a, "Never", False)  # not subscribed: nothing to do
    assert "New/Sub" not in await mb.store.subscriptions(a)


async def test_the_list_has_a_bound(mb, monkeypatch):
    monkeypatch.setattr(store_mod, "MAX_SUBSCRIPTIONS", len(PROVISIONED) + 1)
    a = await mb.add_account("a@city.test", password="pw")
    await mb.store.subscribe(a, "One")
    await mb.store.subscribe(a, "One")  # already there: no new row, no error
    with pytest.raises(errors.OverQuota):
        await mb.store.subscribe(a, "Two")
    await mb.store.subscribe(a, "One", False)
    await mb.store.subscribe(a, "Two")


async def test_recent_is_claimed_once_and_status_counts_the_unclaimed(mb):
    a = await mb.add_account("a@city.test", password="pw")
    for i in range(3):
        res = await mb.store.append(a, "INBOX", prepare(make_message(f"m{i}")))
    ref = res.folder
    assert (await mb.store.status(ref)).recent == 3
    assert await mb.store.claim_recent(ref, 3, read_only=True) == 0  # EXAMINE sees, takes nothing
    assert await mb.store.claim_recent(ref, 2) == 0  # UIDs 1..2 are this caller's
    assert (await mb.store.status(ref)).recent == 1
    assert await mb.store.claim_recent(ref, 3) == 2  # UID 3
    assert await mb.store.claim_recent(ref, 3) == 3  # nothing left
    assert await mb.store.claim_recent(ref, 2) == 2  # a session behind the mark gets nothing
    assert (await mb.store.status(ref)).recent == 0


async def test_recent_goes_to_exactly_one_of_two_stores_racing(two_stores):
    """Two Store objects on one database (two processes or nodes), 20 concurrent claims: each UID once."""
    m1, m2, a = two_stores
    for i in range(10):
        ref = (await m1.store.append(a, "INBOX", prepare(make_message(f"m{i}")))).folder
    tops = [1 + i % 10 for i in range(20)]
    starts = await asyncio.gather(*(st.claim_recent(ref, top) for st, top in zip([m1.store, m2.store] * 10, tops)))
    got = [u for start, top in zip(starts, tops) for u in range(start + 1, top + 1)]
    assert sorted(got) == list(range(1, 11))  # every UID recent for exactly one claimer
    assert (await m2.store.status(ref)).recent == 0


def _columns(path, table: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


async def test_mai0003_moves_subscriptions_to_names_keeps_ids_and_goes_back(tmp_path):
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # a database as mai0002 left it
        command.upgrade(migrations.alembic_config("directory", conn), "head")
        command.upgrade(migrations.alembic_config("mail", conn), "mai0002")
        for fid, name, sub in [(1, "INBOX", 1), (2, "Work", 0), (3, "Work/Reports", 1), (4, "Gone", 1)]:
            conn.exec_driver_sql("INSERT INTO folders (id, account_id, name, uidvalidity, uidnext, highestmodseq, "
                                 f"subscribed, created_at) VALUES ({fid}, 1, '{name}', {fid}, 3, 2, {sub}, '2026-01-01')")
        conn.exec_driver_sql("DELETE FROM folders WHERE id = 4")  # the highest id, deleted: never to come back
    engine.dispose()
    m = await open_mailboxes(StorageConfig(url=f"sqlite:///{path}"), hasher=FAST_HASHER)
    try:
        await m.directory.add_domain("city.test")
        acct = await m.directory.account_by_id((await m.add_account("a@city.test", password="pw")).id)
        assert acct.id == 1
        assert await m.store.subscriptions(acct) == [*PROVISIONED[:2], "INBOX", "Junk", "Sent", "Trash",
                                                    "Work/Reports"]
        fresh = await m.store.create_folder(acct, "Fresh")
        assert fresh.id > 4  # the AUTOINCREMENT mark survived the table rebuild
        inbox = await m.store.folder(acct, "INBOX")
        assert (await m.store.status(inbox.ref)).recent == 0 and await m.store.claim_recent(inbox.ref, 2) == 0
    finally:
        await m.close()
    assert "subscribed" not in _columns(path, "folders") and "recent_uid" in _columns(path, "folders")
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        command.downgrade(migrations.alembic_config("mail", conn), "mai0002")
        rows = dict(conn.exec_driver_sql("SELECT name, subscribed FROM folders").fetchall())
    engine.dispose()
    assert rows["Work/Reports"] == 1 and rows["Work"] == 0 and rows["Fresh"] == 0 and rows["INBOX"] == 1
    assert "subscriptions" not in [r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")]


@pytest.mark.slow
async def test_mai0003_up_and_down_with_data_on_each_backend(empty_storage_url):
    """The same data movement on SQLite and PostgreSQL: flags to names and back, recent_uid 0 for existing folders."""
    db = open_database(empty_storage_url)

    def to(conn, schema: str, rev: str, down: bool = False) -> None:
        (command.downgrade if down else command.upgrade)(migrations.alembic_config(schema, conn), rev)

    try:
        async with db.migrating() as conn:
            await conn.run_sync(to, "directory", "head")
            await conn.run_sync(to, "mail", "mai0002")
            for fid, name, sub in [(1, "INBOX", True), (2, "Work", False), (3, "Work/Reports", True)]:
                await conn.execute(text(
                    "INSERT INTO folders (id, account_id, name, uidvalidity, uidnext, highestmodseq, subscribed, "
                    "created_at) VALUES (:i, 9, :n, :i, 3, 2, :s, '2026-01-01')"), {"i": fid, "n": name, "s": sub})
            await conn.run_sync(to, "mail", "mai0003")
            subs = (await conn.execute(text("SELECT account_id, name FROM subscriptions ORDER BY name"))).all()
            assert [tuple(r) for r in subs] == [(9, "INBOX"), (9, "Work/Reports")]
            assert set((await conn.execute(text("SELECT recent_uid FROM folders"))).scalars()) == {0}
            await conn.execute(text("INSERT INTO subscriptions VALUES (9, 'Work')"))
            await conn.execute(text("DELETE FROM subscriptions WHERE name = 'INBOX'"))
            await conn.run_sync(to, "mail", "mai0002", True)
            flags = dict((await conn.execute(text("SELECT name, subscribed FROM folders"))).all())
            assert flags == {"INBOX": False, "Work": True, "Work/Reports": True}
    finally:
        await db.dispose()
