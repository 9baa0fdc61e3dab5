"""The delivery transaction's cost and its folder cache: statements per message, one thread hop on SQLite, stale entries."""

from __future__ import annotations

import asyncio
import threading
import traceback
from datetime import datetime, timezone

import aiosqlite
import asyncpg
import asyncpg.transaction
import pytest
from sqlalchemy import event, update
from sqlalchemy.engine import Engine

from mailboxes import errors, indexer
from mailboxes import schema as t
from mailboxes.ingest import prepare
from mailboxes.model import Flag
from mailboxes.store import Delivery
from tests.store.test_store import make_message

# SQLite: BEGIN IMMEDIATE, blob look-up, blob insert, its pending-index row (indexed later: indexer.py),
# folder UPDATE ... RETURNING, usage UPDATE ... RETURNING, message insert. PostgreSQL: one statement that
# commits itself (the folder, the usage, a new blob and its pending-index row, the message row, pg_notify).
STATEMENTS_PER_MESSAGE = {"sqlite": 7, "postgresql": 1}


class Statements:
    """Counts the statements every engine runs, and the threads that run them, while it is on."""

    def __init__(self) -> None:
        self.count = 0
        self.threads: set[int] = set()
        self.on = False

    def __call__(self, _conn, _cursor, _statement, _params, _context, _many) -> None:  # noqa: ANN001
        if self.on:
            self.count += 1
            self.threads.add(threading.get_ident())


@pytest.fixture
def statements(monkeypatch):
    # The background indexer (indexer.py) waits for a pause this long: none comes while counting.
    monkeypatch.setattr(indexer, "IDLE", 3600.0)
    s = Statements()
    event.listen(Engine, "before_cursor_execute", s)
    yield s
    event.remove(Engine, "before_cursor_execute", s)


async def test_a_lone_delivery_costs_a_fixed_few_statements(mb, statements):
    acct = await mb.add_account("a@city.test", password="pw")
    for i in range(3):  # the first delivery reads the folder row; the others use what it learnt
        await mb.store.deliver(Delivery(prepare(make_message(f"warm {i}")), ((acct, "INBOX"),)))
    statements.on = True
    for i in range(10):
        res = await mb.store.deliver(Delivery(prepare(make_message(f"m{i}", f"body {i}")), ((acct, "INBOX"),)))
        assert res.results[0].uid == 4 + i
    statements.on = False
    assert statements.count <= 10 * STATEMENTS_PER_MESSAGE[mb.store.router.central.dialect]
    inbox = await mb.store.folder(acct, "INBOX")
    assert inbox.uidnext == 14
    q = await mb.store.quota(acct)
    assert q.used_messages == 13


async def test_on_postgresql_a_lone_delivery_is_one_round_trip_with_no_begin_or_commit(mb, monkeypatch):
    if mb.store.router.central.dialect != "postgresql":
        pytest.skip("the one-statement path is PostgreSQL's")
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.deliver(Delivery(prepare(make_message("warm")), ((acct, "INBOX"),)))
    began = 0
    real = asyncpg.transaction.Transaction.start

    async def counted(self):  # noqa: ANN001
        nonlocal began
        # Only the deliveries' own: the store's background work (the indexer, its look for leftovers at
        # open) has transactions of its own, and on a loaded machine they came between these deliveries.
        if any(f.name == "_write_batch" for f in traceback.extract_stack()):
            began += 1
        return await real(self)

    monkeypatch.setattr(asyncpg.transaction.Transaction, "start", counted)
    for i in range(5):
        res = await mb.store.deliver(Delivery(prepare(make_message(f"m{i}")), ((acct, "INBOX"),)))
        assert res.results[0].uid == 2 + i
    assert began == 0
    assert (await mb.store.quota(acct)).used_messages == 6


async def test_a_body_stored_already_is_delivered_again_into_a_cached_folder(mb):
    """The one-statement path declines a body whose hash is stored (nothing is left of it) and the
    ordinary path references the stored one."""
    acct = await mb.add_account("a@city.test", password="pw")
    p = prepare(make_message("same"))
    first = await mb.store.deliver(Delivery(p, ((acct, "INBOX"),)))
    again = await mb.store.deliver(Delivery(p, ((acct, "INBOX"),)))
    assert (first.results[0].uid, again.results[0].uid) == (1, 2)
    metas = await mb.store.messages(first.results[0].folder)
    assert [m.uid for m in metas] == [1, 2] and metas[0].blob_id == metas[1].blob_id
    inbox = await mb.store.folder(acct, "INBOX")
    assert inbox.uidnext == 3
    q = await mb.store.quota(acct)
    assert (q.used_messages, q.used_bytes) == (2, 2 * p.size)


async def test_over_the_byte_quota_with_the_folder_cached_refuses_and_counts_nothing(mb):
    first, small = prepare(make_message("m0", "x" * 600)), prepare(make_message("s"))
    acct = await mb.add_account("q@city.test", password="pw", quota_bytes=first.size + small.size)
    await mb.store.append(acct, "INBOX", first)
    res = await mb.store.deliver(Delivery(prepare(make_message("second", "y" * 600)), ((acct, "INBOX"),)))
    assert isinstance(res.results[0], errors.OverQuota) and not res.results[0].permanent
    res = await mb.store.deliver(Delivery(small, ((acct, "INBOX"),)))  # exactly what is left
    assert res.results[0].uid == 2
    inbox = await mb.store.folder(acct, "INBOX")
    assert inbox.uidnext == 3
    q = await mb.store.quota(acct)
    assert (q.used_messages, q.used_bytes) == (2, first.size + small.size)


async def test_on_sqlite_a_delivery_is_one_hand_off_to_the_writer_thread(mb, statements, monkeypatch):
    if mb.store.router.central.dialect != "sqlite":
        pytest.skip("asyncpg has no driver thread")
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.deliver(Delivery(prepare(make_message("warm")), ((acct, "INBOX"),)))
    hops = 0
    real = aiosqlite.Connection._execute

    async def counted(self, fn, *args, **kwargs):  # noqa: ANN001
        nonlocal hops
        hops += 1
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    statements.on = True
    await mb.store.deliver(Delivery(prepare(make_message("one")), ((acct, "INBOX"),)))
    statements.on = False
    assert hops == 1
    assert statements.count >= 6 and threading.get_ident() not in statements.threads


async def test_a_folder_renamed_and_made_anew_by_another_store_gets_the_next_delivery(two_stores):
    m1, m2, acct = two_stores
    await m1.store.create_folder(acct, "Work")
    first = await m1.store.append(acct, "Work", prepare(make_message("first")))  # m1 now knows Work's id
    await m2.store.rename_folder(acct, "Work", "Old")
    new = await m2.store.create_folder(acct, "Work")
    second = await m1.store.append(acct, "Work", prepare(make_message("second")))
    assert second.folder.id == new.ref.id != first.folder.id
    assert (second.uidvalidity, second.uid) == (new.uidvalidity, 1)
    old = await m1.store.folder(acct, "Old")
    assert [m.uid for m in await m1.store.messages(old.ref)] == [1]
    await m2.store.delete_folder(acct, "Work")
    with pytest.raises(errors.NotFound):
        await m1.store.append(acct, "Work", prepare(make_message("third")))
    assert (await m1.store.quota(acct)).used_messages == 1  # Old keeps one; Work went with its message


async def test_a_cached_folder_whose_row_changed_under_it_is_not_written(mb):
    """As another node's RENAME would: the row keeps its id and takes a new UIDVALIDITY and name."""
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.create_folder(acct, "Work")
    r = await mb.store.append(acct, "Work", prepare(make_message("first")))
    db = await mb.store._db(r.folder.partition)
    async with db.write() as conn:
        await conn.execute(update(t.folders).where(t.folders.c.id == r.folder.id)
                           .values(name="Elsewhere", uidvalidity=r.uidvalidity + 1000))
    res = await mb.store.deliver(Delivery(prepare(make_message("second")), ((acct, "Work"),)))
    assert isinstance(res.results[0], errors.NotFound)
    moved = await mb.store.folder(acct, "Elsewhere")
    assert moved.uidnext == 2 and [m.uid for m in await mb.store.messages(moved.ref)] == [1]


async def test_over_quota_with_the_folder_cached_refuses_and_counts_nothing(mb):
    acct = await mb.add_account("q@city.test", password="pw", quota_messages=2)
    for i in range(2):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}")))
    res = await mb.store.deliver(Delivery(prepare(make_message("third")), ((acct, "INBOX"),)))
    assert isinstance(res.results[0], errors.OverQuota)
    inbox = await mb.store.folder(acct, "INBOX")
    assert inbox.uidnext == 3
    assert (await mb.store.quota(acct)).used_messages == 2


async def test_an_invalid_folder_name_beside_a_cached_folder_is_refused_alone(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.append(acct, "INBOX", prepare(make_message("warm")))
    res = await mb.store.deliver(Delivery(prepare(make_message("two")), ((acct, "INBOX"), (acct, "bad*name"))))
    assert res.results[0].uid == 2 and isinstance(res.results[1], errors.InvalidInput)
    assert (await mb.store.folder(acct, "INBOX")).uidnext == 3


async def test_a_batch_into_a_cached_folder_keeps_every_message_state(mb):
    """Flags (an IntFlag), keywords, internal dates, sizes and shared bodies, several per group commit."""
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.deliver(Delivery(prepare(make_message("warm")), ((acct, "INBOX"),)))  # the folder is cached
    when = [datetime(2026, 11, 2, 8, i, tzinfo=timezone.utc) for i in range(6)]
    same = prepare(make_message("same body", "twice"))
    deliveries = [Delivery(prepare(make_message(f"m{i}", "x" * (100 * i))), ((acct, "INBOX"),),
                           flags=Flag.SEEN | Flag.FLAGGED if i % 2 else Flag(0),
                           keywords=("$Label1", f"k{i}") if i % 3 == 0 else (), internal_date=when[i])
                  for i in range(4)] + [Delivery(same, ((acct, "INBOX"),), internal_date=when[4 + k]) for k in range(2)]
    results = await asyncio.gather(*(mb.store.deliver(d) for d in deliveries))
    uids = [r.results[0].uid for r in results]
    assert sorted(uids) == list(range(2, 8))
    inbox = await mb.store.folder(acct, "INBOX")
    metas = {m.uid: m for m in await mb.store.messages(inbox.ref)}
    assert inbox.uidnext == 8 and len(metas) == 7
    for d, uid in zip(deliveries, uids):
        m = metas[uid]
        assert m.flags == int(d.flags) and m.keywords == frozenset(d.keywords)
        assert m.internal_date == d.internal_date and m.size == d.message.size
    assert metas[uids[4]].blob_id == metas[uids[5]].blob_id  # one stored body for the two copies
    assert len({metas[u].blob_id for u in uids}) == 5
    assert (await mb.store.quota(acct)).used_messages == 7


async def test_a_batch_across_folders_and_accounts_allocates_and_counts_each(mb, statements):
    """The uncached path (folders read in id order, locked on PostgreSQL): each folder's UIDs, flags and usage."""
    accts = [await mb.add_account(f"u{i}@city.test", password="pw") for i in range(3)]
    await mb.store.create_folder(accts[0], "Work")
    targets = [((accts[0], "INBOX"), (accts[1], "INBOX")), ((accts[0], "Work"),), ((accts[2], "INBOX"),),
               ((accts[1], "INBOX"), (accts[2], "INBOX"))]
    statements.on = True
    results = await asyncio.gather(*(mb.store.deliver(Delivery(prepare(make_message(f"m{k}", "b" * (10 * k))), t,
                                                               flags=Flag.SEEN if k == 1 else Flag(0)))
                                     for k, t in enumerate(targets)))
    statements.on = False
    assert statements.count <= 10 * len(targets)  # a fixed few per batch, whatever the folders (old bound: 9)
    uids: dict[tuple[int, str], list[int]] = {}
    for res, t in zip(results, targets):
        for r, (a, name) in zip(res.results, t):
            uids.setdefault((a.id, name), []).append(r.uid)
    assert {k: sorted(v) for k, v in uids.items()} == {
        (accts[0].id, "INBOX"): [1], (accts[0].id, "Work"): [1], (accts[1].id, "INBOX"): [1, 2],
        (accts[2].id, "INBOX"): [1, 2]}
    for a, name, n in ((accts[0], "INBOX", 1), (accts[0], "Work", 1), (accts[1], "INBOX", 2), (accts[2], "INBOX", 2)):
        f = await mb.store.folder(a, name)
        metas = await mb.store.messages(f.ref)
        assert f.uidnext == n + 1 and [m.uid for m in metas] == list(range(1, n + 1))
        assert f.highestmodseq >= max(m.modseq for m in metas)
    work = await mb.store.messages((await mb.store.folder(accts[0], "Work")).ref)
    assert [m.flags for m in work] == [int(Flag.SEEN)]
    assert [(await mb.store.quota(a)).used_messages for a in accts] == [2, 2, 2]
