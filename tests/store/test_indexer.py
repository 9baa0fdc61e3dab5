"""Search indexing out of the delivery's path (mailboxes/indexer.py): pending rows, the background indexer, catch-up."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select, text

from mailboxes import indexer
from mailboxes import schema as t
from mailboxes.indexer import Indexer
from mailboxes.ingest import prepare
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from mailboxes.store import Delivery
from tests.conftest import FAST_HASHER

from .test_store import make_message


async def counts(db) -> tuple[int, int, int]:
    """(pending rows, word-index rows, substring-index rows)."""
    words = "blob_fts" if db.dialect == "sqlite" else "blob_search"
    async with db.read() as conn:
        return ((await conn.execute(select(func.count()).select_from(t.blob_index_pending))).scalar(),
                (await conn.execute(text(f"SELECT count(*) FROM {words}"))).scalar(),
                (await conn.execute(text("SELECT count(*) FROM blob_text"))).scalar())


def no_pause(monkeypatch) -> None:
    """The background indexer waits for a pause that never comes (what is pending stays so)."""
    monkeypatch.setattr(indexer, "IDLE", 3600.0)


async def test_a_delivery_writes_a_pending_row_and_a_search_indexes_it_first(mb, monkeypatch):
    no_pause(monkeypatch)
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    before = await counts(db)
    res = await mb.store.deliver(Delivery(prepare(make_message("Zebra crossing", "asdfghjkl plans")),
                                          ((acct, "INBOX"),)))
    assert await counts(db) == (before[0] + 1, before[1], before[2])  # in neither index yet
    ref = res.results[0].folder
    assert await mb.store.search_text(ref, "subject", "zebra") == {1}
    assert await counts(db) == (0, before[1] + 1, before[2] + 1)
    assert await mb.store.search_substring(ref, "body", "sdfghjk") == {1}
    page = await mb.store.search_page(ref, "crossing", offset=0, limit=10)
    assert page is not None and page[0] == 1


async def test_every_kind_of_search_catches_up_on_its_own(mb, monkeypatch):
    no_pause(monkeypatch)
    acct = await mb.add_account("a@city.test", password=None)
    for i, (subject, body) in enumerate([("Quarterly", "asdfghjkl"), ("Budget", "税务局通知"), ("Minutes", "x")]):
        await mb.store.append(acct, "INBOX", prepare(make_message(subject, body)))
        ref = (await mb.store.folder(acct, "INBOX")).ref
        if i == 0:
            assert await mb.store.search_substring(ref, "body", "sdfghjk") == {1}
        elif i == 1:
            assert await mb.store.search_text(ref, "body", "税务") == {2}
        else:
            page = await mb.store.search_page(ref, "minutes", offset=0, limit=10)
            assert page is not None and page[0] == 1 and [m.uid for m in page[1]] == [3]


async def test_the_background_indexer_empties_the_pending_rows_once_the_store_is_idle(mb):
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    before = await counts(db)
    for i in range(5):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}", f"body {i}")))
    ix = mb.store.indexer("main")
    await ix.settled()
    assert await counts(db) == (0, before[1] + 5, before[2] + 5)
    assert ix.indexed >= 5


async def test_under_a_load_that_never_pauses_the_backlog_is_still_indexed(mb, monkeypatch):
    no_pause(monkeypatch)
    monkeypatch.setattr(indexer, "BACKLOG", 4)
    monkeypatch.setattr(indexer, "SMALL_BATCH", 3)
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    for i in range(20):
        await mb.store.deliver(Delivery(prepare(make_message(f"m{i}", f"body {i}")), ((acct, "INBOX"),)))
    await mb.store.indexer("main").close()  # stopped after its batch: the counts hold still
    pending, words, _ = await counts(db)
    assert words >= 3 and pending + words == 20  # small batches ran between the deliveries, without a pause


async def test_bodies_left_pending_by_a_stopped_process_are_indexed_at_the_next_open(tmp_path, storage_url, monkeypatch):
    no_pause(monkeypatch)
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("a@city.test", password=None)
        for i in range(3):
            await mb.store.append(acct, "INBOX", prepare(make_message(f"left {i}")))
        assert (await counts(mb.router.central))[0] == 3
    finally:
        await mb.close()  # what is pending stays so
    monkeypatch.setattr(indexer, "IDLE", 0.05)
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await mb.store.indexer("main").settled()
        assert (await counts(mb.router.central))[0] == 0
        acct = await mb.directory.account("a@city.test")
        ref = (await mb.store.folder(acct, "INBOX")).ref
        assert await mb.store.search_text(ref, "subject", "left") == {1, 2, 3}
    finally:
        await mb.close()


async def test_an_expunged_body_takes_its_pending_row_with_it(mb, monkeypatch):
    from mailboxes.model import Flag
    no_pause(monkeypatch)
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    r = await mb.store.append(acct, "INBOX", prepare(make_message("gone")), flags=int(Flag.DELETED))
    assert (await counts(db))[0] == 1
    assert await mb.store.expunge(r.folder) == [r.uid]
    assert (await counts(db))[0] == 0
    assert await mb.store.catch_up_index("main") == 0


async def test_two_indexers_on_one_database_index_each_body_once(mb, monkeypatch):
    """Two processes (or nodes) catching up and indexing in the background at once: no row twice, none lost."""
    no_pause(monkeypatch)
    monkeypatch.setattr(indexer, "BATCH", 7)
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    before = await counts(db)
    for i in range(60):
        await mb.store.deliver(Delivery(prepare(make_message(f"n{i}", f"word{i}")), ((acct, "INBOX"),)))
    a, b = Indexer(db, "a"), Indexer(db, "b")
    done = await asyncio.gather(a.catch_up(), b.catch_up(),
                                db.write_sync(lambda conn, _b: indexer.index_pending_sync(conn, 5, wait=False)))
    assert sum(done) == 60
    assert await counts(db) == (0, before[1] + 60, before[2] + 60)
    ref = (await mb.store.folder(acct, "INBOX")).ref
    assert await mb.store.search_text(ref, "body", "word37") == {38}


async def test_text_neither_database_can_store_is_kept_pending_and_found(mb, monkeypatch):
    """A NUL and raw 8-bit bytes that no charset decodes (lone surrogates) in a body's text."""
    no_pause(monkeypatch)
    acct = await mb.add_account("a@city.test", password=None)
    raw = (b"From: a@city.test\r\nTo: b@city.test\r\nSubject: odd \xff\xfe bytes\r\n"
           b"Content-Type: text/plain\r\n\r\nbefore\x00after \xe9t\xe9 marker\r\n")
    p = prepare(raw)
    assert "\x00" in p.body_text  # PostgreSQL's text refuses it
    r = await mb.store.append(acct, "INBOX", p)
    assert await mb.store.search_text(r.folder, "body", "marker") == {1}
    assert await mb.store.search_substring(r.folder, "text", "bytes") == {1}


def test_pending_texts_are_made_storable_and_ascii_is_left_alone():
    got = indexer.pending_params(7, "sub\udcff", "a@b", "h\x00", "plain ascii")
    assert got == {"blob_id": 7, "ps": "sub\ufffd", "pa": "a@b", "ph": "h\ufffd", "pb": "plain ascii"}
