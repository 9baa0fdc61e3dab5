"""The SELECT read (mailboxes.listing) on SQLite and PostgreSQL: the same messages as the portable reads, folder row and \\Recent mark with them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mailboxes import errors
from mailboxes.ingest import prepare
from mailboxes.model import Flag
from tests.store.test_store import make_message


async def _folder_with_three(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    when = datetime(2026, 11, 2, 10, 0, 0, 123456, tzinfo=timezone.utc)
    for k in range(3):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{k}")), flags=int(Flag.SEEN) if k == 0 else 0,
                              keywords=("$Label1", "Work") if k == 1 else (), internal_date=when)
    return acct, await mb.store.folder(acct, "INBOX"), when


async def test_listing_reads_folder_mark_and_messages_together(mb):
    acct, inbox, when = await _folder_with_three(mb)
    got = await mb.store.listing(inbox.ref)
    assert got.folder == inbox and got.recent_uid == 0
    assert [m.uid for m in got.metas] == [1, 2, 3]
    assert [m.flags for m in got.metas] == [int(Flag.SEEN), 0, 0]
    assert got.metas[1].keywords == frozenset({"$Label1", "Work"}) and got.metas[0].keywords == frozenset()
    assert all(m.internal_date == when and m.internal_date.tzinfo is not None for m in got.metas)
    assert all(type(m.uid) is int and m.size > 0 and m.blob_id > 0 for m in got.metas)
    assert await mb.store.messages(inbox.ref) == got.metas
    await mb.store.claim_recent(inbox.ref, 3)
    assert (await mb.store.listing(inbox.ref)).recent_uid == 3


async def test_folder_changes_after_a_modseq(mb):
    acct, inbox, _ = await _folder_with_three(mb)
    base = (await mb.store.listing(inbox.ref)).folder.highestmodseq
    same = await mb.store.folder_changes(inbox.ref, base)
    assert same.changes.highestmodseq == base and not same.changes.changed and not same.changes.vanished
    await mb.store.store_flags(inbox.ref, [2], "add", int(Flag.FLAGGED))
    await mb.store.store_flags(inbox.ref, [3], "add", int(Flag.DELETED))
    await mb.store.expunge(inbox.ref)
    fc = await mb.store.folder_changes(inbox.ref, base)
    assert [m.uid for m in fc.changes.changed] == [2] and fc.changes.changed[0].flags & Flag.FLAGGED
    assert fc.changes.vanished == [3]
    assert fc.folder.highestmodseq == fc.changes.highestmodseq > base
    assert await mb.store.changes_since(inbox.ref, base) == fc.changes


async def test_listing_of_a_deleted_folder_is_not_found(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    f = await mb.store.create_folder(acct, "Gone")
    await mb.store.delete_folder(acct, "Gone")
    with pytest.raises(errors.NotFound):
        await mb.store.listing(f.ref)
    with pytest.raises(errors.NotFound):
        await mb.store.folder_changes(f.ref, 0)


async def test_claim_recent_with_a_stale_mark_still_claims_each_uid_once(mb):
    acct, inbox, _ = await _folder_with_three(mb)
    mark = (await mb.store.listing(inbox.ref)).recent_uid
    assert await mb.store.claim_recent(inbox.ref, 2, mark=mark) == 0  # UIDs 1..2
    # Another session read the same (now stale) mark: it loses the compare-and-set and gets only UID 3.
    assert await mb.store.claim_recent(inbox.ref, 3, mark=mark) == 2
    assert await mb.store.claim_recent(inbox.ref, 3, mark=3) == 3
    assert await mb.store.claim_recent(inbox.ref, 3, read_only=True, mark=0) == 0  # EXAMINE takes nothing


async def test_state_listing_has_the_columns_select_needs(mb):
    """listing_state: UIDs, MODSEQs, flag bytes and keywords as columns, the same as the full listing's."""
    acct, inbox, _ = await _folder_with_three(mb)
    full = await mb.store.listing(inbox.ref)
    got = await mb.store.listing_state(inbox.ref)
    assert got.folder == full.folder and got.recent_uid == full.recent_uid == 0
    assert got.uids == [1, 2, 3] and all(type(u) is int for u in got.uids)
    assert got.modseqs == [m.modseq for m in full.metas]
    assert got.flags == bytes([int(Flag.SEEN), 0, 0])
    assert got.keywords == {2: frozenset({"$Label1", "Work"})} and got.in_use == frozenset({"$Label1", "Work"})
    empty = await mb.store.create_folder(acct, "Empty")
    none = await mb.store.listing_state(empty.ref)
    assert (none.uids, none.modseqs, none.flags, none.keywords, none.in_use) == ([], [], b"", {}, frozenset())


@pytest.mark.slow
async def test_facts_of_scattered_uids_match_the_listing(mb, monkeypatch):
    """Store.facts reads dense runs as ranges and far-apart UIDs one by one; expunged UIDs are left out."""
    acct = await mb.add_account("f@city.test", password="pw")
    for k in range(40):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{k}")))
    inbox = await mb.store.folder(acct, "INBOX")
    full = {m.uid: (m.internal_date, m.size, m.blob_id) for m in (await mb.store.listing(inbox.ref)).metas}
    wanted = [1, 2, 3, 5, 20, 39, 40, 41]  # 41 was never used
    got = await mb.store.facts(inbox.ref, wanted)
    assert {u: tuple(f) for u, f in got.items() if u in wanted} == {u: full[u] for u in wanted if u in full}
    assert all(tuple(f) == full[u] for u, f in got.items())  # a range read may bring neighbours, never wrong ones
    await mb.store.store_flags(inbox.ref, [20], "add", int(Flag.DELETED))
    await mb.store.expunge(inbox.ref)
    assert 20 not in await mb.store.facts(inbox.ref, [19, 20, 21])


def test_spans_split_only_where_a_gap_costs_more_than_it_saves():
    from mailboxes.listing import _spans

    assert _spans([]) == []
    assert _spans([1, 2, 3, 5, 6]) == [(1, 6)]
    assert _spans([1, 1000, 2000]) == [(1, 1), (1000, 1000), (2000, 2000)]
    assert _spans(list(range(1, 101, 2))) == [(1, 99)]  # every other UID: one range, twice the rows


async def test_large_reads_are_converted_off_the_event_loop(mb, monkeypatch):
    """On PostgreSQL the SELECT read runs on the event loop (run_sync): turning a large folder's rows or saved
    state into columns and tuples there held every session of the process (~70 ms for 100,000 messages). Beyond
    OFF_LOOP_ROWS it runs in a worker thread; on SQLite it was in the reader's thread already."""
    import threading

    from mailboxes import folderstate, listing
    monkeypatch.setattr(listing, "OFF_LOOP_ROWS", 0)  # every conversion, a saved state's decoding too
    loop_thread = threading.get_ident()
    threads: dict[str, set[int]] = {}

    def watched(name, fn):
        def run(*args):
            threads.setdefault(name, set()).add(threading.get_ident())
            return fn(*args)
        return run
    for name in ("metas_from_rows", "state_columns", "_facts_of"):
        monkeypatch.setattr(listing, name, watched(name, getattr(listing, name)))
    for name in ("decode", "fold"):
        monkeypatch.setattr(folderstate, name, watched(name, getattr(folderstate, name)))
    acct, inbox, when = await _folder_with_three(mb)
    assert [m.uid for m in await mb.store.messages(inbox.ref)] == [1, 2, 3]
    state = await mb.store.listing_state(inbox.ref)
    assert state.uids == [1, 2, 3] and state.keywords == {2: frozenset({"$Label1", "Work"})}
    assert {u: f.internal_date for u, f in (await mb.store.facts(inbox.ref, [1, 2, 3])).items()} == dict.fromkeys([1, 2, 3], when)
    base = state.folder.highestmodseq
    await mb.store.append(acct, "INBOX", prepare(make_message("m3")))
    await mb.store.append(acct, "INBOX", prepare(make_message("m4")))
    assert [m.uid for m in (await mb.store.folder_changes(inbox.ref, base)).changes.changed] == [4, 5]
    # a saved state, then read with what changed since: decoded and folded off the loop too
    cols = (await mb.store.listing_state(inbox.ref)).columns
    assert await mb.store._save_state(inbox.ref, inbox.uidvalidity, (await mb.store.folder(acct, "INBOX")).highestmodseq,
                                      cols)
    await mb.store.append(acct, "INBOX", prepare(make_message("m5")))
    assert (await mb.store.listing_state(inbox.ref)).uids == [1, 2, 3, 4, 5, 6]
    assert set(threads) == {"metas_from_rows", "state_columns", "_facts_of", "decode", "fold"}, threads
    assert all(loop_thread not in ids for ids in threads.values()), threads
