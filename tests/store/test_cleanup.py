"""Deleted mail is removed: unreferenced bodies, search rows and files go; shared ones stay; usage matches a recount."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select, text

from mailboxes import cleanup
from mailboxes import schema as t
from mailboxes.indexer import Indexer
from mailboxes.ingest import prepare
from mailboxes.model import Flag
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from mailboxes.store import Delivery
from tests.conftest import FAST_HASHER

from .test_store import make_message


def unique(word: str = "body") -> tuple[str, bytes]:
    """A message with a token found nowhere else (to look for in the search index)."""
    token = f"zq{uuid.uuid4().hex[:12]}"
    return token, make_message(f"{word} {token}", f"{word} text {token} end")


async def accounts(mb, *names: str) -> list:
    return [await mb.add_account(f"{n}@city.test", password=None) for n in names]


async def blob_count(db) -> int:
    """Stored bodies."""
    async with db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(t.blobs))).scalar()


async def rows_containing(db, token: str) -> int:
    """Blob rows whose stored bytes or parse still hold `token` (deleted mail must not stay readable)."""
    async with db.read() as conn:
        rows = (await conn.execute(select(t.blobs.c.data, t.blobs.c.parsed))).all()
    return sum(token.encode() in bytes(r.data or b"") or token in r.parsed for r in rows)


async def search_rows(db, token: str | None = None) -> int:
    """Rows in the full-text index (those that contain `token`, when given), once nothing is pending."""
    await Indexer(db, "test").catch_up()
    async with db.read() as conn:
        if db.dialect == "sqlite":
            if token is None:
                return (await conn.execute(text("SELECT count(*) FROM blob_fts"))).scalar()
            return (await conn.execute(text("SELECT count(*) FROM blob_fts WHERE body LIKE :p"),
                                       {"p": f"%{token}%"})).scalar()
        if token is None:
            return (await conn.execute(text("SELECT count(*) FROM blob_search"))).scalar()
        return (await conn.execute(text("SELECT count(*) FROM blob_search WHERE body @@ to_tsquery('simple', :q)"),
                                   {"q": token})).scalar()


async def substring_rows(db, token: str | None = None) -> int:
    """Rows in the substring index, blob_text (those whose body holds `token`, when given), once nothing is pending."""
    await Indexer(db, "test").catch_up()
    async with db.read() as conn:
        if token is None:
            return (await conn.execute(text("SELECT count(*) FROM blob_text"))).scalar()
        return (await conn.execute(text("SELECT count(*) FROM blob_text WHERE body LIKE :p"),
                                   {"p": f"%{token}%"})).scalar()


async def assert_usage_matches_recount(mb, acct) -> None:
    before = await mb.store.quota(acct)
    after = await mb.store.recount_usage(acct)
    assert (before.used_bytes, before.used_messages) == (after.used_bytes, after.used_messages)


async def test_expunge_removes_body_and_search_rows(mb):
    a = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    token, raw = unique()
    base_blobs, base_rows, base_text = await blob_count(db), await search_rows(db), await substring_rows(db)
    r = await mb.store.append(a, "INBOX", prepare(raw), flags=int(Flag.DELETED))
    assert await search_rows(db, token) == 1 and await blob_count(db) == base_blobs + 1
    assert await substring_rows(db, token) == 1
    assert (await mb.store.quota(a)).used_bytes == len(raw)
    assert await mb.store.expunge(r.folder) == [r.uid]
    assert await blob_count(db) == base_blobs and await rows_containing(db, token) == 0
    assert await search_rows(db, token) == 0 and await search_rows(db) == base_rows
    assert await substring_rows(db, token) == 0 and await substring_rows(db) == base_text
    assert (await mb.store.quota(a)).used_bytes == 0
    await assert_usage_matches_recount(mb, a)


async def test_a_new_blob_never_gets_the_id_of_a_removed_one(mb):
    """The IMAP render cache keys on (partition, blob id): a reused id would show another message."""
    a, b = await accounts(mb, "a", "b")
    _, first = unique("first")
    r = await mb.store.append(a, "INBOX", prepare(first), flags=int(Flag.DELETED))
    [m1] = await mb.store.messages(r.folder)
    await mb.store.expunge(r.folder)  # the highest blob id goes
    _, second = unique("second")
    r2 = await mb.store.append(b, "INBOX", prepare(second))
    [m2] = await mb.store.messages(r2.folder)
    assert m2.blob_id > m1.blob_id
    assert await mb.store.parsed("main", [m1.blob_id]) == {m1.blob_id: cleanup.empty_parse()}
    assert await mb.store.raw_many("main", [m1.blob_id]) in ({}, {m1.blob_id: b""})
    async with mb.router.central.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.blobs))).scalar() == 1


async def test_shared_body_stays_until_its_last_message_goes(mb):
    a, b = await accounts(mb, "a", "b")
    db = mb.router.central
    token, raw = unique("circular")
    res = await mb.store.deliver(Delivery(prepare(raw), ((a, "INBOX"), (b, "INBOX")), flags=int(Flag.DELETED)))
    ra, rb = res.results
    await mb.store.expunge(ra.folder)
    [mb_meta] = await mb.store.messages(rb.folder)
    assert await mb.store.raw(rb.folder.partition, mb_meta.blob_id) == raw
    assert await search_rows(db, token) == 1
    assert await mb.store.search_text(rb.folder, None, token) == {rb.uid}
    await mb.store.expunge(rb.folder)
    assert await blob_count(db) == 0 and await search_rows(db, token) == 0
    for acct in (a, b):
        await assert_usage_matches_recount(mb, acct)


async def test_delete_folder_and_copy_move_keep_usage_equal_to_stored(mb):
    a = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    await mb.store.create_folder(a, "Work")
    await mb.store.create_folder(a, "Later")
    inbox = await mb.store.folder(a, "INBOX")
    work = await mb.store.folder(a, "Work")
    later = await mb.store.folder(a, "Later")
    tokens = []
    for i in range(4):
        token, raw = unique(f"m{i}")
        tokens.append(token)
        await mb.store.append(a, "INBOX", prepare(raw))
    await mb.store.copy(a, inbox.ref, [1, 2], work.ref)  # shares bodies with INBOX
    await mb.store.move(a, inbox.ref, [3], later.ref)
    await assert_usage_matches_recount(mb, a)
    assert (await mb.store.quota(a)).used_messages == 6
    await mb.store.delete_folder(a, "Work")  # bodies 1, 2 are still in INBOX
    assert await blob_count(db) == 4
    await assert_usage_matches_recount(mb, a)
    await mb.store.delete_folder(a, "Later")  # body 3 was only there
    assert await blob_count(db) == 3 and await search_rows(db, tokens[2]) == 0
    await mb.store.store_flags(inbox.ref, [1, 2, 4], "add", int(Flag.DELETED))
    await mb.store.expunge(inbox.ref)
    assert await blob_count(db) == 0 and await search_rows(db) == 0
    q = await mb.store.quota(a)
    assert (q.used_bytes, q.used_messages) == (0, 0)
    await assert_usage_matches_recount(mb, a)


async def test_purge_account_removes_all_its_mail_but_not_shared_bodies(mb):
    a, b = await accounts(mb, "a", "b")
    db = mb.router.central
    _, shared = unique("shared")
    _, own = unique("own")
    await mb.store.deliver(Delivery(prepare(shared), ((a, "INBOX"), (b, "INBOX"))))
    await mb.store.append(a, "Sent", prepare(own))
    assert await mb.store.purge_account(a) == 2
    assert await blob_count(db) == 1
    [m] = await mb.store.messages((await mb.store.folder(b, "INBOX")).ref)
    assert await mb.store.raw("main", m.blob_id) == shared
    assert await mb.store.folders(a) == []


async def test_recount_repairs_drifted_usage(mb):
    a = await mb.add_account("a@city.test", password=None)
    _, raw = unique()
    await mb.store.append(a, "INBOX", prepare(raw))
    async with mb.router.central.write() as conn:
        await conn.execute(t.mailbox_usage.update().values(bytes=12345, messages=7))
    q = await mb.store.recount_usage(a)
    assert (q.used_bytes, q.used_messages) == (len(raw), 1)
    assert (await mb.store.quota(a)).used_bytes == len(raw)


async def test_sweep_removes_leftovers_of_older_versions(mb):
    """Rows deleted the old way (message rows only) leave bodies and index rows: the sweep takes them."""
    a = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    token, raw = unique()
    _, kept = unique("kept")
    r = await mb.store.append(a, "INBOX", prepare(raw))
    await mb.store.append(a, "INBOX", prepare(kept))
    async with db.write() as conn:
        await conn.execute(t.messages.delete().where(t.messages.c.uid == r.uid))  # as the old EXPUNGE did
    assert await blob_count(db) == 2
    [report] = (await cleanup.sweep_all(mb.store)).values()
    assert report.blobs == 1 and report.usage_fixed == 1
    assert await blob_count(db) == 1 and await search_rows(db, token) == 0 and await search_rows(db) == 1
    q = await mb.store.quota(a)
    assert (q.used_bytes, q.used_messages) == (len(kept), 1)


@pytest.fixture
async def mb_files(storage_url, tmp_path):
    m = await open_mailboxes(StorageConfig(url=storage_url, blob_dir=str(tmp_path / "blobs")), hasher=FAST_HASHER)
    await m.directory.add_domain("city.test")
    yield m
    await m.close()


def files_under(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_blob_directory_files_follow_their_rows(mb_files, tmp_path):
    mb = mb_files
    root = tmp_path / "blobs"
    a, b = await accounts(mb, "a", "b")
    _, raw = unique("file")
    res = await mb.store.deliver(Delivery(prepare(raw), ((a, "INBOX"), (b, "INBOX")), flags=int(Flag.DELETED)))
    [path] = files_under(root)
    assert path.parent.parent.parent.name == "main"  # one directory per partition
    await mb.store.expunge(res.results[0].folder)
    assert files_under(root) == [path]  # b still has it
    await mb.store.expunge(res.results[1].folder)
    assert files_under(root) == []
    # The same content delivered again after its removal is written anew and readable.
    r = await mb.store.append(a, "INBOX", prepare(raw))
    [m] = await mb.store.messages(r.folder)
    assert await mb.store.raw("main", m.blob_id) == raw


async def test_sweep_removes_files_without_rows_and_keeps_the_rest(mb_files, tmp_path):
    """A crash between the commit and the unlink (or a rolled-back delivery) leaves a file without a row."""
    mb = mb_files
    a = await mb.add_account("a@city.test", password=None)
    _, raw = unique("live")
    await mb.store.append(a, "INBOX", prepare(raw))
    [live] = files_under(tmp_path / "blobs")
    files = mb.store.files("main")
    stray = prepare(unique("stray")[1])
    await files.write(stray.sha256, stray.raw)
    files.path(stray.sha256).with_suffix(".tmp").write_bytes(b"half")
    [report] = (await cleanup.sweep_all(mb.store)).values()
    assert report.files == 1
    assert files_under(tmp_path / "blobs") == [live]


async def test_legacy_files_are_still_read(mb_files, tmp_path):
    """Files written by older versions (no partition level) stay readable."""
    mb = mb_files
    a = await mb.add_account("a@city.test", password=None)
    _, raw = unique("old")
    r = await mb.store.append(a, "INBOX", prepare(raw))
    [path] = files_under(tmp_path / "blobs")
    legacy = tmp_path / "blobs" / path.relative_to(tmp_path / "blobs" / "main")
    legacy.parent.mkdir(parents=True)
    path.rename(legacy)
    [m] = await mb.store.messages(r.folder)
    assert await mb.store.raw("main", m.blob_id) == raw


async def _wait_for_lock_waiter(db) -> None:
    """PostgreSQL: until some other session waits for a row lock (a condition, with a deadline)."""
    for _ in range(2000):
        async with db.read() as conn:
            n = (await conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                         " AND datname = current_database()"))).scalar()
        if n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("no session waited for the lock")


async def test_delivery_racing_the_last_expunge_keeps_its_body(mb):
    """Identical content delivered while the expunge of its last reference is deleting the blob."""
    a, b = await accounts(mb, "a", "b")
    db = mb.router.central
    _, raw = unique("race")
    r = await mb.store.append(a, "INBOX", prepare(raw))
    [meta] = await mb.store.messages(r.folder)
    async with db.write() as conn:  # the expunge transaction, held open at its riskiest point
        await conn.execute(t.messages.delete().where(t.messages.c.blob_id == meta.blob_id))
        released = await cleanup.collect(conn, [meta.blob_id])
        assert released.deleted == 1
        delivery = asyncio.create_task(mb.store.append(b, "INBOX", prepare(raw)))
        if db.dialect == "postgresql":
            await _wait_for_lock_waiter(db)  # blocked on the blob row this transaction deletes
        await conn.execute(t.mailbox_usage.update().where(t.mailbox_usage.c.account_id == a.id)
                           .values(bytes=0, messages=0))
    rb = await delivery
    [mbm] = await mb.store.messages(rb.folder)
    assert await mb.store.raw("main", mbm.blob_id) == raw
    assert await mb.store.search_text(rb.folder, "body", "race") == {rb.uid}


@pytest.mark.pg
async def test_collect_skips_a_blob_another_transaction_is_referencing(storage_url):
    """PostgreSQL: a blob held by a delivery in progress is not deleted, and not waited for in the
    transaction; after the commit it is checked again and kept (or removed, had the delivery failed)."""
    if not storage_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's")
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await mb.directory.add_domain("city.test")
        a = await mb.add_account("a@city.test", password=None)
        b = await mb.add_account("b@city.test", password=None)
        db = mb.router.central
        for i, outcome in enumerate(("commit", "rollback")):
            _, raw = unique(outcome)
            r = await mb.store.append(a, "INBOX", prepare(raw), flags=int(Flag.DELETED))
            [meta] = await mb.store.messages(r.folder)
            inbox_b = await mb.store.folder(b, "INBOX")
            holder = await db.writer.connect()
            tx = await holder.begin()
            from mailboxes.blobs import put_many
            [bid] = await put_many(holder, [prepare(raw)], None)  # FOR KEY SHARE on the row
            assert bid == meta.blob_id
            await holder.execute(t.messages.insert().values(
                folder_id=inbox_b.id, uid=1000 + i, modseq=1, flags=0, keywords="", size=len(raw),
                blob_id=bid, internal_date=meta.internal_date))
            async with db.write() as conn:
                await conn.execute(t.messages.delete().where(t.messages.c.blob_id == bid))
                released = await cleanup.collect(conn, [bid])
            assert released.skipped == [bid] and released.deleted == 0
            finishing = asyncio.create_task(cleanup.finish(db, None, released))
            await _wait_for_lock_waiter(db)
            await (tx.commit() if outcome == "commit" else tx.rollback())
            await holder.close()
            done = await finishing
            assert done.deleted == (0 if outcome == "commit" else 1)
            assert await blob_count(db) == 1  # the one b's committed message refers to
    finally:
        await mb.close()


async def test_file_removal_waits_for_a_delivery_writing_the_same_file(mb_files, tmp_path):
    """A removal after the commit of a row's deletion must not take the file a new delivery is writing."""
    mb = mb_files
    db = mb.router.central
    files = mb.store.files("main")
    p = prepare(unique("again")[1])
    from mailboxes.blobs import put_many
    holder = await db.writer.connect()
    tx = await holder.begin()
    await put_many(holder, [p], files)  # the new row's file is written, the row not yet committed
    removing = asyncio.create_task(cleanup.remove_files(db, files, [p.sha256]))
    if db.dialect == "postgresql":
        await _wait_for_lock_waiter(db)  # on the advisory lock of this hash
    else:
        await asyncio.sleep(0)  # SQLite: waits for the one writer connection, which `holder` is
    assert not removing.done()
    await tx.commit()
    await holder.close()
    assert await removing == 0
    assert files.path(p.sha256).read_bytes() == p.raw


async def test_archive_move_leaves_no_body_in_the_source_partition(storage_url, tmp_path):
    from datetime import datetime, timezone

    from mailboxes.archive import archive_year
    mb = await open_mailboxes(StorageConfig(url=storage_url, mode="year", blob_dir=str(tmp_path / "blobs")),
                              hasher=FAST_HASHER)
    try:
        await mb.directory.add_domain("city.test")
        a, b = await accounts(mb, "a", "b")
        old = datetime(2025, 6, 1, tzinfo=timezone.utc)
        now = datetime.now(timezone.utc)
        shared_token, shared = unique("shared old")
        own_token, own = unique("own old")
        _, current = unique("current")
        await mb.store.deliver(Delivery(prepare(shared), ((a, "INBOX"), (b, "INBOX")), internal_date=old))
        await mb.store.append(a, "INBOX", prepare(own), internal_date=old)
        await mb.store.append(a, "INBOX", prepare(current), internal_date=now)
        rep = await archive_year(mb.store, 2025)
        assert rep.moved == 3
        main, archive = mb.router.central, await mb.router.database("archive-2025")
        assert await blob_count(main) == 1 and await search_rows(main) == 1
        assert await search_rows(main, shared_token) == 0 and await search_rows(main, own_token) == 0
        assert len(files_under(tmp_path / "blobs" / "main")) == 1
        assert await blob_count(archive) == 2 and await search_rows(archive, shared_token) == 1
        assert len(files_under(tmp_path / "blobs" / "archive-2025")) == 2
        folder = await mb.store.folder(b, "Archive/2025/INBOX")
        [m] = await mb.store.messages(folder.ref)
        assert await mb.store.raw("archive-2025", m.blob_id) == shared
        for acct in (a, b):
            await assert_usage_matches_recount(mb, acct)
        assert (await mb.store.quota(a)).used_messages == 1
    finally:
        await mb.close()


async def test_two_nodes_racing_expunge_and_delivery_of_the_same_body(storage_url, tmp_path):
    """Two stores on one database (two nodes): the last expunge of a body on one races a delivery of
    the same bytes on the other, in every interleaving the event loops produce; no delivery fails and
    every delivered message reads back, with its file."""
    cfg = StorageConfig(url=storage_url, blob_dir=str(tmp_path / "blobs"))
    one = await open_mailboxes(cfg, hasher=FAST_HASHER)
    two = await open_mailboxes(cfg, hasher=FAST_HASHER)
    try:
        await one.directory.add_domain("city.test")
        a, b = await accounts(one, "a", "b")
        inbox_a = await one.store.folder(a, "INBOX")
        for round_ in range(25):
            _, raw = unique(f"round {round_}")
            await one.store.append(a, "INBOX", prepare(raw), flags=int(Flag.DELETED))
            _, delivered = await asyncio.gather(one.store.expunge(inbox_a.ref),
                                                two.store.append(b, "INBOX", prepare(raw)))
            metas = {m.uid: m for m in await two.store.messages(delivered.folder)}
            assert await one.store.raw("main", metas[delivered.uid].blob_id) == raw
        await cleanup.sweep_all(one.store)
        assert await blob_count(one.router.central) == 25
        assert len(files_under(tmp_path / "blobs")) == 25
    finally:
        await two.close()
        await one.close()
