"""Search indexing out of the delivery's path (mailboxes/indexer.py): pending rows, the background indexer, catch-up."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from mailboxes import indexer, search, substring
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
    monkeypatch.setattr(indexer, "BURST_IDLE", 3600.0)


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


async def deliver_a_burst(mb, monkeypatch, *, burst_idle: float):  # noqa: ANN001
    """30 deliveries, a burst from the 5th on (BURST = 5); outside a burst any gap would do (IDLE = 0)."""
    monkeypatch.setattr(indexer, "IDLE", 0.0)
    monkeypatch.setattr(indexer, "BURST", 5)
    monkeypatch.setattr(indexer, "BURST_WINDOW", 60.0)  # a loaded machine may take a second for 5 deliveries
    monkeypatch.setattr(indexer, "BURST_IDLE", burst_idle)
    acct = await mb.add_account("a@city.test", password=None)
    for i in range(30):
        await mb.store.deliver(Delivery(prepare(make_message(f"b{i}", f"burst {i}")), ((acct, "INBOX"),)))
    return acct


async def test_a_burst_of_deliveries_is_indexed_after_it_not_between_its_waves(mb, monkeypatch):
    """Once BURST bodies come within a second, the indexer waits for BURST_IDLE of quiet, not IDLE.

    Its batches in the gaps of a burst took the CPU and the writer from the burst's deliveries
    (a burst of 1,000 notifications reached the mailboxes 15-23 % later at p99, bridges_bench).
    """
    acct = await deliver_a_burst(mb, monkeypatch, burst_idle=3600.0)
    db = mb.router.central
    ix = mb.store.indexer("main")
    # Before the 5th delivery showed the burst the indexer ran at any gap (IDLE = 0), and a batch started
    # then may also take what committed before it read: a few; without the burst rule it took nearly all 30.
    assert (await counts(db))[0] >= 20
    assert ix.indexed <= 10
    ref = (await mb.store.folder(acct, "INBOX")).ref
    assert len(await mb.store.search_text(ref, "body", "burst")) == 30  # a search catches up all the same


async def test_after_a_burst_the_indexer_runs_once_it_is_quiet(mb, monkeypatch):
    await deliver_a_burst(mb, monkeypatch, burst_idle=0.05)
    await mb.store.indexer("main").settled()
    assert (await counts(mb.router.central))[0] == 0


async def test_a_body_written_while_a_batch_runs_is_indexed_after_it(mb, monkeypatch):
    """A delivery that commits after a batch looked for pending rows, but before the batch ended, was
    forgotten: the batch, not full, set the count of what waits to 0 and the indexer stopped."""
    monkeypatch.setattr(indexer, "IDLE", 0.0)
    acct = await mb.add_account("a@city.test", password=None)
    ix = mb.store.indexer("main")
    real, late = ix._batch, []

    async def batch_then_a_delivery(size: int, *, wait: bool, **budget):  # noqa: ANN202
        got = await real(size, wait=wait, **budget)
        if not late:  # after the first batch read what was pending, one more message arrives
            late.append(await mb.store.deliver(Delivery(prepare(make_message("late", "late words")),
                                                        ((acct, "INBOX"),))))
        return got
    monkeypatch.setattr(ix, "_batch", batch_then_a_delivery)
    await mb.store.deliver(Delivery(prepare(make_message("first", "first words")), ((acct, "INBOX"),)))
    await ix.settled()
    assert late and (await counts(mb.router.central))[0] == 0
    ref = (await mb.store.folder(acct, "INBOX")).ref
    assert len(await mb.store.search_text(ref, "body", "late")) == 1


async def test_under_a_load_that_never_pauses_bodies_waiting_past_max_lag_are_still_indexed(mb, monkeypatch):
    no_pause(monkeypatch)
    monkeypatch.setattr(indexer, "MAX_LAG", 0.0)  # every body is due at once
    monkeypatch.setattr(indexer, "SMALL_BATCH", 3)
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    for i in range(20):
        await mb.store.deliver(Delivery(prepare(make_message(f"m{i}", f"body {i}")), ((acct, "INBOX"),)))
    await mb.store.indexer("main").close()  # stopped after its batch: the counts hold still
    pending, words, _ = await counts(db)
    assert words >= 3 and pending + words == 20  # small batches ran between the deliveries, without a pause


async def test_a_flow_within_max_lag_is_not_indexed_and_a_search_catches_up_its_folder_only(mb, monkeypatch):
    """While deliveries never pause, bodies wait up to MAX_LAG: indexing them between deliveries slowed a flow
    of 1,000 notifications a second (p99 570 ms without it, 2.1 s with it, bridges_bench). A search indexes
    what its own folder waits for, not the flow's backlog."""
    no_pause(monkeypatch)
    monkeypatch.setattr(indexer, "MAX_LAG", 3600.0)
    a = await mb.add_account("a@city.test", password=None)
    b = await mb.add_account("b@city.test", password=None)
    db = mb.router.central
    before = await counts(db)
    for i in range(12):
        await mb.store.deliver(Delivery(prepare(make_message(f"m{i}", f"flow{i} words")), (((a, b)[i % 3 == 0], "INBOX"),)))
    await mb.store.append(a, "Archive", prepare(make_message("filed", "flow99 words")))
    assert await counts(db) == (before[0] + 13, before[1], before[2])  # none indexed during the flow
    ix = mb.store.indexer("main")
    assert ix.indexed == 0
    inbox_a, inbox_b = (await mb.store.folder(a, "INBOX")).ref, (await mb.store.folder(b, "INBOX")).ref
    assert await mb.store.search_text(inbox_a, "body", "flow5") == {4}  # uids 1-8 are a's messages 1,2,4,5,...
    assert await counts(db) == (before[0] + 5, before[1] + 8, before[2] + 8)  # a's INBOX only
    assert await mb.store.search_substring(inbox_b, "body", "flow9") == {4}
    assert await counts(db) == (before[0] + 1, before[1] + 12, before[2] + 12)
    archive = (await mb.store.folder(a, "Archive")).ref
    assert await mb.store.search_text(archive, None, "flow99") == {1}
    assert (await counts(db))[0] == before[0]


async def test_a_batch_between_deliveries_stops_at_its_text_budget(mb, monkeypatch):
    """SMALL_BATCH rows, but no more text than SMALL_BATCH_CHARS: larger bodies make fewer rows a batch, so a
    delivery waits behind a bounded batch whatever the mail is."""
    no_pause(monkeypatch)
    monkeypatch.setattr(indexer, "MAX_LAG", 0.0)
    monkeypatch.setattr(indexer, "SMALL_BATCH", 100)
    monkeypatch.setattr(indexer, "SMALL_BATCH_CHARS", 2_500)
    acct = await mb.add_account("a@city.test", password=None)
    ix = mb.store.indexer("main")
    taken: list[int] = []
    real = ix._batch

    async def counted(size, *, wait, **budget):
        n, full = await real(size, wait=wait, **budget)
        taken.append(n)
        return n, full
    monkeypatch.setattr(ix, "_batch", counted)
    for i in range(20):  # ~1,400 characters a row: two rows reach the budget
        await mb.store.deliver(Delivery(prepare(make_message(f"m{i}", f"body {i} " + "x" * 1_000)), ((acct, "INBOX"),)))
    await ix.close()
    pending, words, _ = await counts(mb.router.central)
    assert taken and max(taken) == 2 and pending + words == 20 and words == sum(taken)


async def left_pending(storage_url: str, monkeypatch, subjects: list[str]) -> None:  # noqa: ANN001
    """A process delivers these messages and stops before indexing them; the next open may index again."""
    no_pause(monkeypatch)
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("a@city.test", password=None)
        for subject in subjects:
            await mb.store.deliver(Delivery(prepare(make_message(subject, f"words {subject}")), ((acct, "INBOX"),)))
        assert (await counts(mb.router.central))[0] == len(subjects)
    finally:
        await mb.close()  # what is pending stays so
    monkeypatch.setattr(indexer, "IDLE", 0.05)


async def test_bodies_left_pending_by_a_stopped_process_are_indexed_at_the_next_open(tmp_path, storage_url, monkeypatch):
    await left_pending(storage_url, monkeypatch, [f"left {i}" for i in range(3)])
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await mb.store.indexer("main").settled()
        assert (await counts(mb.router.central))[0] == 0
        acct = await mb.directory.account("a@city.test")
        ref = (await mb.store.folder(acct, "INBOX")).ref
        assert await mb.store.search_text(ref, "subject", "left") == {1, 2, 3}
    finally:
        await mb.close()


async def test_the_background_indexer_holds_the_writer_for_small_batches(tmp_path, storage_url, monkeypatch):
    """Idle, it indexes IDLE_BATCH bodies a transaction (200 bodies of 4 KB held the store's writer
    ~110 ms, every delivery waiting behind them; 50, ~30 ms); a search's catch-up still takes BATCH."""
    await left_pending(storage_url, monkeypatch, [f"w{i}" for i in range(120)])
    monkeypatch.setattr(indexer, "IDLE_BATCH", 25)
    real, batches = Indexer._batch, []

    async def counted(self, size, *, wait, **budget):  # noqa: ANN001
        n, full = await real(self, size, wait=wait, **budget)
        batches.append((size, n))
        return n, full

    monkeypatch.setattr(Indexer, "_batch", counted)
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await mb.store.indexer("main").settled()
        assert (await counts(mb.router.central))[0] == 0
        assert sum(n for _, n in batches) == 120 and {size for size, _ in batches} == {25}, batches
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
                                db.write_sync(lambda conn, _b: indexer.index_pending_sync(conn, 5, wait=False)[0]))
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
    assert got == {"blob_id": 7, "pn": 20, "ps": "sub\ufffd", "pa": "a@b", "ph": "h\ufffd", "pb": "plain ascii"}


def test_pending_texts_keep_only_what_the_indexes_read():
    """A pending row holds no more of a text than search.py and substring.py take of it, and counts it."""
    huge = "w" * (search.MAX_INDEXED_CHARS + 5000)
    got = indexer.pending_params(1, huge, "a@b", "h" * 100_000, huge)
    assert len(got["ps"]) == len(got["pb"]) == search.MAX_INDEXED_CHARS
    assert len(got["ph"]) == 2 * substring.HEAD_CHARS
    assert got["pn"] == 2 * search.MAX_INDEXED_CHARS + 3 + 2 * substring.HEAD_CHARS
    # The cut rows index exactly as the whole texts did.
    assert search.index_text(got["pb"]) == search.index_text(huge)
    assert substring.prepare(got["ph"], substring.HEAD_CHARS) == substring.prepare("h" * 100_000, substring.HEAD_CHARS)
    assert substring.prepare(got["pb"], substring.BODY_CHARS) == substring.prepare(huge, substring.BODY_CHARS)


async def test_a_batch_holds_at_most_batch_chars_of_text_and_the_catch_up_takes_them_all(mb, monkeypatch):
    no_pause(monkeypatch)
    monkeypatch.setattr(indexer, "BATCH_CHARS", 10_000)
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    await mb.store.catch_up_index("main")
    for i in range(12):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"big {i}", f"needle{i} " + "lorem ipsum " * 250)))
    taken = await db.write_sync(lambda conn, _b: indexer.index_pending_sync(conn, 200, wait=False))
    assert taken[1] is True and 3 <= taken[0] <= 4  # about 3,000 characters a row: past 10,000 at the fourth
    big = indexer.pending_params(None, "s", "", "", "x" * 50_000)["pn"]
    assert big > indexer.BATCH_CHARS  # a row larger than the budget is still taken, alone
    ref = (await mb.store.folder(acct, "INBOX")).ref
    assert await mb.store.search_text(ref, "body", "needle11") == {12}
    assert (await counts(db))[0] == 0


async def test_a_search_catches_up_in_batches_that_hold_the_sqlite_writer_briefly(mb, monkeypatch):
    """On SQLite every writer waits behind a catch-up's batch: it stops at CATCH_UP_CHARS of text, and the
    search still finds all. On PostgreSQL (no one writer) a batch takes BATCH rows."""
    no_pause(monkeypatch)
    monkeypatch.setattr(indexer, "CATCH_UP_CHARS", 7_000)
    acct = await mb.add_account("a@city.test", password=None)
    ix = mb.store.indexer("main")
    await ix.close()  # only the search's catch-up indexes
    for i in range(12):  # ~3,000 characters a row
        await mb.store.append(acct, "INBOX", prepare(make_message(f"big {i}", f"needle{i} " + "lorem ipsum " * 250)))
    taken: list[int] = []
    real = ix._batch

    async def counted(size, *, wait, **budget):  # noqa: ANN001, ANN202
        n, full = await real(size, wait=wait, **budget)
        taken.append(n)
        return n, full
    monkeypatch.setattr(ix, "_batch", counted)
    ref = (await mb.store.folder(acct, "INBOX")).ref
    assert await mb.store.search_text(ref, "body", "needle11") == {12}
    assert sum(taken) == 12 and (await counts(mb.router.central))[0] == 0
    assert max(taken) == (3 if mb.router.central.dialect == "sqlite" else 12)


async def test_a_body_the_database_refuses_to_index_is_left_out_of_that_index_only(mb, monkeypatch, caplog):
    """PostgreSQL's tsvector holds at most 1 MB of lexemes (a long Chinese text of varied characters exceeds it);
    on SQLite a second index row for one body is refused. The batch is not lost, nor is any search stopped."""
    no_pause(monkeypatch)
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    r1 = await mb.store.append(acct, "INBOX", prepare(make_message("first", "alpha words")))
    if db.dialect == "sqlite":  # index the first, then make it pending again: its second rows are refused
        await mb.store.catch_up_index("main")
        [meta] = await mb.store.messages(r1.folder)
        await db.write_sync(lambda conn, _b: indexer.add_pending(conn, [indexer.pending_params(
            meta.blob_id, "first", "", "", "alpha words")]))
    else:  # 300,000 random Chinese characters: some 600,000 different bigrams, 3.6 MB of lexemes
        rnd = random.Random(7)
        huge = "".join(chr(rnd.randrange(0x4E00, 0x9FA5)) for _ in range(300_000))
        await mb.store.append(acct, "INBOX", prepare(make_message("huge", huge)))
    await mb.store.append(acct, "INBOX", prepare(make_message("second", "bravo words")))
    ref = (await mb.store.folder(acct, "INBOX")).ref
    with caplog.at_level("WARNING", logger="mailboxes.indexer"):
        assert await mb.store.search_text(ref, "body", "bravo") == {3 if db.dialect != "sqlite" else 2}
    assert "left out of the word index" in caplog.text
    assert (await counts(db))[0] == 0
    assert await mb.store.search_text(ref, "body", "alpha") == {1}
    if db.dialect != "sqlite":  # the substring index took the huge body all the same (its first 64 KiB)
        assert "substring" not in caplog.text
        assert await mb.store.search_substring(ref, "body", huge[1000:1006]) == {2}
    else:
        assert "word index and the substring index" in caplog.text


async def test_a_database_that_fails_otherwise_leaves_the_batch_pending(mb, monkeypatch):
    """A locked or lost database is not a refusal of the data: nothing is left out, the rows wait."""
    no_pause(monkeypatch)
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    await mb.store.append(acct, "INBOX", prepare(make_message("first", "alpha words")))
    ref = (await mb.store.folder(acct, "INBOX")).ref
    real = search.insert_params

    def locked(conn, params):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(search, "insert_params", locked)
    with pytest.raises(OperationalError):
        await mb.store.search_text(ref, "body", "alpha")
    assert (await counts(db))[0] == 1
    monkeypatch.setattr(search, "insert_params", real)
    assert await mb.store.search_text(ref, "body", "alpha") == {1}


def test_only_a_refusal_of_the_data_counts_as_refused():
    class Orig(Exception):
        def __init__(self, sqlstate):
            super().__init__("x")
            self.sqlstate = sqlstate

    assert indexer.refused(DBAPIError("s", {}, Orig("54000")))  # program limit exceeded: tsvector too long
    assert indexer.refused(DBAPIError("s", {}, Orig("22021")))  # character not in repertoire
    assert indexer.refused(IntegrityError("s", {}, Exception("UNIQUE constraint failed")))
    assert not indexer.refused(DBAPIError("s", {}, Orig("40001")))  # serialization failure: retry
    assert not indexer.refused(DBAPIError("s", {}, Orig("57P01")))  # admin shutdown
    assert not indexer.refused(OperationalError("s", {}, Exception("database is locked")))


async def test_a_batch_made_outside_the_write_indexes_only_the_rows_still_pending(mb, monkeypatch):
    """SQLite: rows are read and tokenised in a read transaction, then taken and written in a write.
    Another process's indexer may have taken some in between (or a body gone with its row): those
    are not written again, so every body is in each index once."""
    no_pause(monkeypatch)
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL takes its rows under row locks in one transaction")
    before = await counts(db)
    for i in range(3):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}", f"zqxbody{i} words")))
    stale = await db.read_sync(lambda conn: indexer.prepare_sync(conn, indexer.BATCH))
    assert len(stale.ids) == 3 and not stale.full
    # "another process" indexes the first body meanwhile
    await db.write_sync(lambda conn, _b: indexer.index_pending_sync(conn, 1, wait=True, only=stale.ids[0]))
    assert await counts(db) == (2, before[1] + 1, before[2] + 1)
    assert await db.write_sync(lambda conn, _b: indexer.write_prepared_sync(conn, stale)) == 2
    assert await counts(db) == (0, before[1] + 3, before[2] + 3)
    assert await db.write_sync(lambda conn, _b: indexer.write_prepared_sync(conn, stale)) == 0  # all taken
    assert await counts(db) == (0, before[1] + 3, before[2] + 3)
    ref = (await mb.store.folder(acct, "INBOX")).ref
    assert await mb.store.search_text(ref, "body", "zqxbody1") == {2}
    assert await mb.store.search_substring(ref, "body", "xbody2") == {3}


async def test_a_search_catching_up_goes_on_when_another_indexer_took_its_batch(mb, monkeypatch):
    """make test (IMAP SEARCH on 10,000 messages) missed bodies: the background indexer took the rows a
    search's catch-up had read, the catch-up's write took none, and it stopped as if nothing were left,
    with hundreds still pending behind them."""
    no_pause(monkeypatch)
    monkeypatch.setattr(indexer, "BATCH", 20)
    acct = await mb.add_account("a@city.test", password=None)
    db = mb.router.central
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL takes its rows under row locks in one transaction")
    for i in range(50):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}", f"needle{i % 2} words")))
    real = indexer.write_prepared_sync
    raced = []

    def others_first(conn, batch):
        if not raced:  # another process's indexer takes this very batch just before us
            raced.append(len(batch.ids))
            for blob_id in batch.ids:
                indexer.index_pending_sync(conn, 1, wait=True, only=blob_id)
        return real(conn, batch)

    monkeypatch.setattr(indexer, "write_prepared_sync", others_first)
    ref = (await mb.store.folder(acct, "INBOX")).ref
    assert await mb.store.search_text(ref, "body", "needle1") == set(range(2, 51, 2))
    assert raced == [20] and (await counts(db))[0] == 0


async def _three_on_sqlite(mb, monkeypatch, subject: str, body: str):
    """(the database, an account with three messages in its INBOX) for a test of SQLite's query plans."""
    db = mb.router.central
    if db.dialect != "sqlite":
        pytest.skip("the plan of SQLite's query planner")
    no_pause(monkeypatch)
    acct = await mb.add_account("a@city.test", password=None)
    for i in range(3):
        await mb.store.deliver(Delivery(prepare(make_message(subject.format(i=i), body)), ((acct, "INBOX"),)))
    return db, acct


async def test_a_folders_catch_up_probes_messages_by_body_whatever_sqlite_believes(mb, monkeypatch):
    """Without statistics SQLite sometimes probed `messages` by folder_id (ix_messages_modseq) for each pending
    row, reading the whole folder each time: 0.65 s a batch for a 400-message INBOX behind 19,000 pending
    bodies (bridges_bench), and as long again for the search's look for what is left. Statistics that make
    folder_id look selective must not bring that plan back: the probe is by messages.blob_id."""
    db, acct = await _three_on_sqlite(mb, monkeypatch, "m{i}", "plan")

    def misleading_statistics(conn, _blocking) -> None:
        conn.exec_driver_sql("ANALYZE")
        conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl = 'messages'")
        conn.exec_driver_sql("INSERT INTO sqlite_stat1 VALUES ('messages', 'ix_messages_blob_id', '1000000 5000'),"
                             " ('messages', 'ix_messages_modseq', '1000000 1 1')")
        conn.exec_driver_sql("ANALYZE sqlite_schema")  # load them
    await db.write_sync(misleading_statistics)
    ref = (await mb.store.folder(acct, "INBOX")).ref
    params = {"fid": ref.id, "n": 200, "lo": 0, "hi": 2**62, "budget": 10**6, "ids": [1]}
    scoped = [indexer._ANY[True], indexer._FIRST_IDS[True], indexer._PEEK[True], *indexer._take_sql("sqlite", True, True)]
    without_plus = text(str(indexer._ANY[True]).replace("+m.folder_id", "m.folder_id"))
    for stmt in [*scoped, without_plus]:
        plan = await db.read_sync(lambda conn, s=stmt: [r[3] for r in conn.execute(text(f"EXPLAIN QUERY PLAN {s}"),
                                                                                   params)])
        probes = [p for p in plan if p.startswith("SEARCH m ")]
        if stmt is without_plus:  # the statistics do mislead: without "+" the folder's index is taken
            assert probes == ["SEARCH m USING INDEX ix_messages_modseq (folder_id=?)"], plan
        else:
            assert probes == ["SEARCH m USING INDEX ix_messages_blob_id (blob_id=?)"], (stmt, plan)
    assert await mb.store.search_text(ref, "body", "plan") == {1, 2, 3}


async def test_a_folders_search_walks_the_folder_whatever_sqlite_believes(mb, monkeypatch):
    """Statistics that make a folder look large and bodies unique turned every folder search around: each body
    of the partition that the index matched probed `messages` by blob_id, so a common word cost a probe per
    matching message of the whole database. Every search statement walks the folder's rows instead."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    db, acct = await _three_on_sqlite(mb, monkeypatch, "m{i} 税务稽查", "plan ahead *star*")
    ref = (await mb.store.folder(acct, "INBOX")).ref
    await mb.store.catch_up_index(ref.partition)

    def misleading_statistics(conn, _blocking) -> None:
        """A million messages in folders of 100,000, each body in one message (every index on folder_id first)."""
        conn.exec_driver_sql("ANALYZE")
        for idx, stat in conn.exec_driver_sql("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'messages'").all():
            columns = len(stat.split()) - 1
            new = "1000000 1" if idx == "ix_messages_blob_id" else " ".join(["1000000", "100000"] + ["1"] * (columns - 1))
            conn.exec_driver_sql("UPDATE sqlite_stat1 SET stat = ? WHERE tbl = 'messages' AND idx = ?", (new, idx))
        conn.exec_driver_sql("ANALYZE sqlite_schema")  # load them
    await db.write_sync(misleading_statistics)

    statements: list[tuple[str, object]] = []

    def seen(_conn, _cursor, statement, parameters, *_args) -> None:
        if "FROM messages" in statement and ("blob_fts" in statement or "blob_text" in statement):
            statements.append((statement, parameters))
    event.listen(Engine, "before_cursor_execute", seen)
    try:
        assert await mb.store.search_text(ref, None, "plan") == {1, 2, 3}
        for where, needle in (("body", "plan"), ("text", "plan ahead"), ("body", "pl"), ("body", "*sta"),
                              ("text", "稽查"), ("body", "an a")):
            assert await mb.store.search_substring(ref, where, needle) == {1, 2, 3}, needle
        count, page = await mb.store.search_page(ref, "plan", offset=0, limit=10)
        assert count == 3 and len(page) == 3
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert len(statements) >= 9
    for statement, parameters in statements:
        plan = await db.read_sync(lambda conn, s=statement, p=parameters: [
            r[3] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}", p)])
        first = next(p for p in plan if p.startswith(("SEARCH", "SCAN")))
        assert first.startswith(("SEARCH messages USING", "SEARCH m USING")) and "(folder_id=?" in first, (statement, plan)
        assert not any("ix_messages_blob_id" in p for p in plan), (statement, plan)
