"""IMAP STORE, EXPUNGE and SELECT's reads and \\Recent claim: one transaction each, one hand-off to SQLite's thread, events after the commit."""

from __future__ import annotations

import aiosqlite
import pytest

from mailboxes.ingest import prepare
from mailboxes.errors import NotFound
from mailboxes.model import Flag
from tests.store.test_store import make_message


@pytest.fixture
def hops(monkeypatch):
    """How many calls went to aiosqlite's thread (each execute, fetch or commit is one)."""
    count = [0]
    real = aiosqlite.Connection._execute

    async def counted(self, fn, *args, **kwargs):  # noqa: ANN001
        count[0] += 1
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return count


async def _inbox_of_four(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    for i in range(4):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}", size_pad=100 * i)))
    # The background indexer runs once the store has been idle a moment: let it finish here, or its
    # batch lands among the hand-offs a test counts (make test, a loaded machine: 2 instead of 1).
    await mb.store.indexer(mb.store.home(acct)).settled()
    return acct, (await mb.store.folder(acct, "INBOX")).ref


async def test_store_is_one_hand_off_and_publishes_after_it(mb, hops):
    if mb.store.router.central.dialect != "sqlite":
        pytest.skip("asyncpg has no driver thread")
    _, ref = await _inbox_of_four(mb)
    listener = mb.store.bus.listen(ref)
    for args, kw in (((ref, [2], "add", int(Flag.SEEN)), {}),
                     ((ref, [1, 2], "add", 0, ["Work"]), {}),  # keywords: read, then write the changed rows
                     ((ref, [1, 3], "remove", int(Flag.SEEN)), {"unchanged_since": 1}),
                     ((ref, [4], "replace", int(Flag.FLAGGED)), {})):
        hops[0] = 0
        changed, _ = await mb.store.store_flags(*args, **kw)
        assert hops[0] == 1, args
        if changed:
            ev = listener.queue.get_nowait()
            assert ev.kind == "flags" and ev.highestmodseq == changed[0].modseq
    metas = {m.uid: m for m in await mb.store.messages(ref)}
    assert metas[2].flag_names() == ["\\Seen", "Work"]
    assert metas[1].keywords == frozenset({"Work"}) and metas[4].flag_names() == ["\\Flagged"]
    listener.close()


async def test_expunge_is_one_hand_off_and_keeps_usage_tombstones_and_blobs_right(mb, hops):
    if mb.store.router.central.dialect != "sqlite":
        pytest.skip("asyncpg has no driver thread")
    acct, ref = await _inbox_of_four(mb)
    before = await mb.store.quota(acct)
    sizes = {m.uid: m.size for m in await mb.store.messages(ref)}
    await mb.store.store_flags(ref, [2, 3], "add", int(Flag.DELETED))
    listener = mb.store.bus.listen(ref)
    hops[0] = 0
    assert await mb.store.expunge(ref, [1, 2]) == [2]  # UID EXPUNGE: only the \Deleted one in the set
    assert hops[0] == 1  # the blob it referred to is gone with it, nothing left for after the commit
    assert listener.queue.get_nowait().kind == "expunge"
    hops[0] = 0
    assert await mb.store.expunge(ref, [1]) == []  # nothing to remove: no new MODSEQ, no event
    assert hops[0] == 1 and listener.queue.empty()
    assert await mb.store.expunge(ref) == [3]
    after = await mb.store.quota(acct)
    assert (after.used_messages, after.used_bytes) == (before.used_messages - 2,
                                                       before.used_bytes - sizes[2] - sizes[3])
    assert [m.uid for m in await mb.store.messages(ref)] == [1, 4]
    listener.close()


async def test_expunge_frees_the_blobs_no_message_refers_to(mb):
    acct, ref = await _inbox_of_four(mb)
    metas = await mb.store.messages(ref)
    await mb.store.store_flags(ref, [1, 2, 3, 4], "add", int(Flag.DELETED))
    assert await mb.store.expunge(ref) == [1, 2, 3, 4]
    assert await mb.store.raw_many(ref.partition, [m.blob_id for m in metas]) == {}


async def test_a_select_reads_its_folder_in_one_hand_off_and_claims_recent_in_another(mb, hops):
    if mb.store.router.central.dialect != "sqlite":
        pytest.skip("asyncpg has no driver thread")
    _, ref = await _inbox_of_four(mb)
    await mb.store.listing(ref)  # the reader pool's connection is opened (its pragmas are hops of their own)
    hops[0] = 0
    listing = await mb.store.listing(ref)
    assert [m.uid for m in listing.metas] == [1, 2, 3, 4] and listing.recent_uid == 0
    assert hops[0] <= 2  # the read in the connection's thread, and the pool's reset when it goes back
    hops[0] = 0
    assert await mb.store.claim_recent(ref, 4, mark=listing.recent_uid) == 0
    assert hops[0] == 1
    assert await mb.store.claim_recent(ref, 4) == 4  # another session: nothing left to claim
    await mb.store.store_flags(ref, [3], "add", int(Flag.SEEN))
    hops[0] = 0
    changes = await mb.store.folder_changes(ref, listing.folder.highestmodseq)
    assert [m.uid for m in changes.changes.changed] == [3] and changes.recent_uid == 4
    assert hops[0] <= 2


async def test_a_folder_is_found_by_name_or_ref_in_a_hand_off_per_database(mb, hops):
    """SELECT, STATUS and APPEND look the folder up first: the partitions, then the folder row, each one read."""
    if mb.store.router.central.dialect != "sqlite":
        pytest.skip("asyncpg has no driver thread")
    acct, ref = await _inbox_of_four(mb)
    await mb.store.folder(acct, "INBOX")  # the reader pool's connection is opened
    hops[0] = 0
    assert await mb.store.partitions_of(acct) == [mb.store.home(acct)]
    assert hops[0] <= 2  # the read in the connection's thread, and the pool's reset when it goes back
    hops[0] = 0
    assert (await mb.store.folder(acct, "INBOX")).ref == ref
    assert hops[0] <= 4  # partitions, then the folder row: 18 hand-offs through the async connection
    hops[0] = 0
    assert (await mb.store.folder_by_ref(ref)).name == "INBOX"
    assert hops[0] <= 2
    with pytest.raises(NotFound):
        await mb.store.folder(acct, "Nowhere")


async def test_a_listing_carries_its_uids_and_the_keywords_in_use(mb):
    _, ref = await _inbox_of_four(mb)
    await mb.store.store_flags(ref, [2], "add", 0, ["$Label1", "Work"])
    await mb.store.store_flags(ref, [4], "add", 0, ["Work"])
    listing = await mb.store.listing(ref)
    assert listing.uids == [m.uid for m in listing.metas] == [1, 2, 3, 4]
    assert listing.keywords == {"$Label1", "Work"}
    assert [m.keywords for m in listing.metas] == [set(), {"$Label1", "Work"}, set(), {"Work"}]
