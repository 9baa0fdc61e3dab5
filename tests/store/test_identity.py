"""Folder identity on SQLite and PostgreSQL: ids never reused, UIDVALIDITY strictly increasing, stale refs refused."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

import pytest
from sqlalchemy import create_engine, text

from mailboxes import errors, migrations
from mailboxes.identity import next_uidvalidity
from mailboxes.ingest import prepare
from mailboxes.model import Flag
from mailboxes.partitions import StorageConfig
from mailboxes.schema import NEVER_REUSED, directory_metadata, mail_metadata
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER
from tests.store.test_store import make_message


async def test_a_deleted_folders_id_is_never_given_again(mb):
    """Issue 7 (1): the folder created after a DELETE, by another account, got the deleted one's id."""
    a = await mb.add_account("a@city.test", password="pw")
    b = await mb.add_account("b@city.test", password="pw")
    x = await mb.store.create_folder(a, "Secret")
    await mb.store.append(a, "Secret", prepare(make_message("SECRET")))
    await mb.store.delete_folder(a, "Secret")
    y = await mb.store.create_folder(b, "Fresh")
    assert y.id > x.id
    again = await mb.store.create_folder(a, "Secret")  # the same name, the same owner
    assert again.id > y.id


async def test_deleted_message_blob_and_account_ids_are_not_given_again(mb):
    a = await mb.add_account("a@city.test", password="pw")
    r1 = await mb.store.append(a, "INBOX", prepare(make_message("one")), flags=int(Flag.DELETED))
    [m1] = await mb.store.messages(r1.folder)
    await mb.store.expunge(r1.folder)
    db = await mb.router.database(r1.folder.partition)
    async with db.write() as conn:  # what the body clean-up does with an unreferenced body
        await conn.execute(text("DELETE FROM blobs WHERE id = :i"), {"i": m1.blob_id})
    r2 = await mb.store.append(a, "INBOX", prepare(make_message("two")))
    [m2] = await mb.store.messages(r2.folder)
    assert m2.blob_id > m1.blob_id
    await mb.directory.remove_account("a@city.test")
    c = await mb.add_account("c@city.test", password="pw")
    assert c.id > a.id


async def test_uidvalidity_grows_on_every_recreation_within_one_second(mb):
    """RFC 3501 §2.3.1.1 / issue 7 (2): DELETE + CREATE in the same second kept UIDVALIDITY."""
    a = await mb.add_account("a@city.test", password="pw")
    seen = []
    for _ in range(5):
        f = await mb.store.create_folder(a, "Projects")
        seen.append(f.uidvalidity)
        await mb.store.delete_folder(a, "Projects")
    assert seen == sorted(set(seen))
    other = await mb.store.create_folder(a, "Other")
    await mb.store.rename_folder(a, "Other", "Projects")  # a RENAME onto a name used before
    renamed = await mb.store.folder(a, "Projects")
    assert renamed.uidvalidity > seen[-1] and renamed.uidvalidity != other.uidvalidity


@pytest.mark.slow
async def test_uidvalidity_is_unique_across_concurrent_creators_and_processes(two_stores):
    """Two stores on one database (two processes or nodes) and concurrent CREATEs: every value distinct, increasing."""
    m1, m2, a = two_stores
    made = await asyncio.gather(*(st.create_folder(a, f"F{i}") for i, st in enumerate([m1.store, m2.store] * 10)))
    values = [f.uidvalidity for f in made]
    assert len(set(values)) == len(values)
    before = max(values)
    await m2.store.delete_folder(a, "F0")
    assert (await m1.store.create_folder(a, "F0")).uidvalidity > before


async def test_concurrent_first_accounts_on_a_fresh_database(mb):
    """A fresh database's first accounts made side by side each get their folders. On PostgreSQL all but one
    failed with a duplicate key: the fresh build lacked the UIDVALIDITY counter row, and each provision inserted it
    (found by the 2,000-recipient test in test_store.py when it made its accounts concurrently)."""
    accts = await asyncio.gather(*(mb.add_account(f"u{i}@city.test", password=None) for i in range(8)))
    values = [f.uidvalidity for a in accts for f in await mb.store.folders(a)]
    assert len(values) == 8 * 6 and len(set(values)) == len(values)


async def test_uidvalidity_counter_outruns_a_clock_that_stands_still_or_goes_back(mb):
    db = await mb.router.database("main")
    async with db.write() as conn:
        first = await next_uidvalidity(conn, clock=lambda: 4_000_000)
        block = await next_uidvalidity(conn, 3, clock=lambda: 4_000_000)
        back = await next_uidvalidity(conn, clock=lambda: 1)
        ahead = await next_uidvalidity(conn, clock=lambda: 4_100_000)
    assert first >= 4_000_000
    assert block == first + 1 and back == first + 4 and ahead == 4_100_000


async def test_a_stale_folder_ref_is_refused_by_every_write(mb):
    """The store itself refuses a ref whose folder was deleted, re-created or renamed (the webmail cannot slip)."""
    a = await mb.add_account("a@city.test", password="pw")
    b = await mb.add_account("b@city.test", password="pw")
    old = await mb.store.create_folder(a, "Work")
    await mb.store.append(a, "Work", prepare(make_message("mine")), flags=int(Flag.DELETED))
    await mb.store.delete_folder(a, "Work")
    new = await mb.store.create_folder(a, "Work")
    await mb.store.append(a, "Work", prepare(make_message("kept")), flags=int(Flag.DELETED))
    inbox = (await mb.store.folder(a, "INBOX")).ref
    stale = old.ref
    with pytest.raises(errors.NotFound):
        await mb.store.store_flags(stale, [1], "add", int(Flag.SEEN))
    with pytest.raises(errors.NotFound):
        await mb.store.changes_since(stale, 0)
    with pytest.raises(errors.NotFound):
        await mb.store.append(a, stale, prepare(make_message("late")))
    with pytest.raises(errors.NotFound):
        await mb.store.copy(a, stale, [1], inbox)
    with pytest.raises(errors.NotFound):
        await mb.store.copy(a, inbox, [1], stale)
    assert await mb.store.expunge(stale) == []  # nothing of the old folder is left to remove
    # A ref that names the right row under another generation or another owner is refused too.
    for wrong in (dataclasses.replace(new.ref, generation=new.uidvalidity - 1), dataclasses.replace(new.ref, owner=b.id)):
        with pytest.raises(errors.NotFound):
            await mb.store.expunge(wrong)
        with pytest.raises(errors.NotFound):
            await mb.store.store_flags(wrong, [1], "add", int(Flag.SEEN))
        with pytest.raises(errors.NotFound):
            await mb.store.folder_by_ref(wrong)
    assert [m.uid for m in await mb.store.messages(new.ref)] == [1]
    assert await mb.store.expunge(new.ref) == [1]
    await mb.store.rename_folder(a, "Work", "Play")
    with pytest.raises(errors.NotFound):
        await mb.store.store_flags(new.ref, [1], "add", int(Flag.SEEN))


# --- the migration on an existing SQLite database ------------------------------------------------------------


def _sqlite_tables_sql(path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())


@pytest.mark.slow
async def test_migration_keeps_data_and_makes_sqlite_ids_never_reused(tmp_path):
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # a database as mai0001 / dir0001 left it, with foreign keys on
        conn.exec_driver_sql("PRAGMA foreign_keys = ON")
        from alembic import command

        command.upgrade(migrations.alembic_config("directory", conn), "dir0001")
        command.upgrade(migrations.alembic_config("mail", conn), "mai0001")
        conn.exec_driver_sql("INSERT INTO domains (id, name, created_at) VALUES (1, 'city.test', '2026-01-01')")
        conn.exec_driver_sql("INSERT INTO accounts (id, address, domain_id, display_name, role, quota_bytes, "
                             "quota_messages, enabled, created_at) VALUES (1, 'a@city.test', 1, '', 'user', 0, 0, 1, "
                             "'2026-01-01')")
        conn.exec_driver_sql("INSERT INTO groups (id, address, name, post_policy, created_at) "
                             "VALUES (1, 'g@city.test', '', 'domain', '2026-01-01')")
        conn.exec_driver_sql("INSERT INTO group_members VALUES (1, 'a@city.test')")
        conn.exec_driver_sql("INSERT INTO folders (id, account_id, name, uidvalidity, uidnext, highestmodseq, "
                             "subscribed, created_at) VALUES (7, 1, 'INBOX', 4000000000, 2, 2, 1, '2026-01-01')")
        conn.exec_driver_sql("INSERT INTO blobs (id, sha256, size, data, parsed) VALUES (3, x'00', 1, x'41', '{}')")
        conn.exec_driver_sql("INSERT INTO messages (id, folder_id, uid, modseq, flags, keywords, internal_date, size, "
                             "blob_id) VALUES (5, 7, 1, 2, 0, '', '2026-01-01', 1, 3)")
        conn.exec_driver_sql("INSERT INTO folder_acl VALUES (7, 'anyone', 'lr')")
    engine.dispose()
    m = await open_mailboxes(StorageConfig(url=f"sqlite:///{path}"), hasher=FAST_HASHER)
    try:
        db = await m.router.database("main")
        async with db.read() as conn:
            counts = {name: (await conn.execute(text(f"SELECT count(*) FROM {name}"))).scalar()
                      for name in ("accounts", "group_members", "folders", "messages", "folder_acl", "blobs")}
        assert counts == dict.fromkeys(counts, 1)  # nothing cascaded away while tables were rebuilt
        async with db.write() as conn:
            assert await next_uidvalidity(conn) == 4000000001  # seeded above every folder's
    finally:
        await m.close()
    sql = _sqlite_tables_sql(path)
    for table in [*directory_metadata.tables.values(), *mail_metadata.tables.values()]:
        if table.dialect_kwargs.get("sqlite_autoincrement") == NEVER_REUSED["sqlite_autoincrement"]:
            assert "AUTOINCREMENT" in sql[table.name], table.name
    # And back down (foreign keys off, as Database.migrating runs them): the data stays.
    with engine.begin() as conn:
        from alembic import command

        conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        command.downgrade(migrations.alembic_config("mail", conn), "mai0001")
        command.downgrade(migrations.alembic_config("directory", conn), "dir0001")
        assert conn.exec_driver_sql("SELECT count(*) FROM messages").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM group_members").scalar() == 1
    engine.dispose()
    sql = _sqlite_tables_sql(path)
    assert "mail_counters" not in sql and "AUTOINCREMENT" not in sql["folders"] + sql["accounts"]


async def test_fresh_sqlite_database_has_autoincrement_ids(tmp_path):
    m = await open_mailboxes(StorageConfig(url=f"sqlite:///{tmp_path}/new.db"), hasher=FAST_HASHER)
    await m.close()
    sql = _sqlite_tables_sql(tmp_path / "new.db")
    for name in ("folders", "messages", "blobs", "accounts", "app_passwords", "groups"):
        assert "AUTOINCREMENT" in sql[name], name
