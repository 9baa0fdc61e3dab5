"""The webmail's reads: one page of a folder by arrival date, one message by UID, never another account's."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from mailboxes.errors import NotFound
from mailboxes.ingest import prepare
from mailboxes.model import Flag, FolderRef
from tests.protocol.imap.harness import message  # formatted, not built with EmailMessage: 3,000 below
from tests.store.test_store import make_message


async def test_pages_by_arrival_date_both_ways_and_single_messages(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    # Appended out of date order: UID order is not date order.
    for i, day in enumerate([3, 1, 4, 2, 5]):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}")), internal_date=t0 + timedelta(days=day))
    ref = (await mb.store.folder(acct, "INBOX")).ref
    newest = await mb.store.message_page(ref, offset=0, limit=2)
    assert [m.uid for m in newest] == [5, 3]
    rest = await mb.store.message_page(ref, offset=2, limit=10)
    assert [m.uid for m in rest] == [1, 4, 2]
    assert [m.uid for m in await mb.store.message_page(ref, offset=0, limit=5, newest_first=False)] == [2, 4, 1, 3, 5]
    assert [m.uid for m in await mb.store.message_page(ref, offset=0, limit=10, uids=[1, 2, 5, 99])] == [5, 1, 2]
    assert await mb.store.message_page(ref, offset=0, limit=10, uids=[]) == []
    assert (await mb.store.message(ref, 3)).internal_date == t0 + timedelta(days=4)
    assert await mb.store.message(ref, 99) is None


async def test_counts_of_every_folder_at_once(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.append(acct, "INBOX", prepare(make_message("1")))
    await mb.store.append(acct, "INBOX", prepare(make_message("2")), flags=int(Flag.SEEN))
    await mb.store.append(acct, "Archive", prepare(make_message("3")), flags=int(Flag.FLAGGED))
    folders = await mb.store.folders(acct)
    counts = {f.name: n for f in folders for ref, n in (await mb.store.counts(folders)).items() if ref == f.ref}
    assert counts == {"INBOX": (2, 1), "Archive": (1, 1), "Drafts": (0, 0), "Sent": (0, 0), "Trash": (0, 0),
                      "Junk": (0, 0)}
    for f in folders:
        st = await mb.store.status(f.ref)
        assert counts[f.name] == (st.messages, st.unseen)


async def test_a_ref_to_another_accounts_folder_is_refused(mb):
    a = await mb.add_account("a@city.test", password="pw")
    b = await mb.add_account("b@city.test", password="pw")
    await mb.store.append(b, "INBOX", prepare(make_message("secret")))
    theirs = (await mb.store.folder(b, "INBOX")).ref
    forged = FolderRef(theirs.partition, theirs.id, theirs.generation, a.id)  # right id, wrong owner
    with pytest.raises(NotFound):
        await mb.store.message(forged, 1)
    with pytest.raises(NotFound):
        await mb.store.message_page(forged, offset=0, limit=10)


@pytest.mark.slow
async def test_a_page_of_a_scattered_uid_set_of_thousands(mb):
    """Two of every three messages of 3,000 (1,000 UID ranges): more than SQL takes as one condition."""
    acct = await mb.add_account("a@city.test", password="pw")
    from mailboxes.store import Delivery
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for k in range(0, 3000, 500):  # concurrent deliveries share commits (group commit)
        await asyncio.gather(*(mb.store.deliver(Delivery(prepare(message(f"m{i}")), ((acct, "INBOX"),), 0, (),
                                                         t0 + timedelta(minutes=i))) for i in range(k, k + 500)))
    ref = (await mb.store.folder(acct, "INBOX")).ref
    hits = [u for u in range(1, 3001) if u % 3]
    page = await mb.store.message_page(ref, offset=50, limit=50, uids=hits)
    assert [m.uid for m in page] == hits[::-1][50:100]
    page = await mb.store.message_page(ref, offset=0, limit=3, uids=hits, newest_first=False)
    assert [m.uid for m in page] == [1, 2, 4]


async def test_search_page_counts_and_pages_word_index_hits_in_the_database(mb):
    """Chinese runs as substrings, English words by prefix, in subject, addresses and body; paged by date."""
    acct = await mb.add_account("a@city.test", password="pw")
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for i in range(12):
        subject, body = (f"第三季度报告 {i}", "各位同事：budgets attached.") if i % 2 else (f"Lunch {i}", "see you")
        await mb.store.append(acct, "INBOX", prepare(make_message(subject, body, sender=f"s{i}@city.test")),
                              internal_date=t0 + timedelta(hours=i))
    ref = (await mb.store.folder(acct, "INBOX")).ref
    odd = [u for u in range(12, 0, -1) if u % 2 == 0]  # UID i+1 holds message i: the odd i, newest first
    for query in ("季度报告", "季度", "同事", "BUDGET", "budg"):
        count, page = await mb.store.search_page(ref, query, offset=0, limit=4)
        assert (count, [m.uid for m in page]) == (6, odd[:4]), query
    count, page = await mb.store.search_page(ref, "季度", offset=4, limit=4)
    assert (count, [m.uid for m in page]) == (6, odd[4:])
    count, page = await mb.store.search_page(ref, "季度", offset=0, limit=2, newest_first=False)
    assert [m.uid for m in page] == odd[::-1][:2]
    count, page = await mb.store.search_page(ref, "s3@city.test", offset=0, limit=10)
    assert (count, [m.uid for m in page]) == (1, [4])  # the sender's address
    assert await mb.store.search_page(ref, "nothing-like-this", offset=0, limit=10) == (0, [])
    assert await mb.store.search_page(ref, "季度", offset=100, limit=10) == (6, [])
    assert await mb.store.search_page(ref, "!!!", offset=0, limit=10) is None  # no terms: the caller decides
    b = await mb.add_account("b@city.test", password="pw")
    forged = FolderRef(ref.partition, ref.id, ref.generation, b.id)  # right id, wrong owner
    with pytest.raises(NotFound):
        await mb.store.search_page(forged, "季度", offset=0, limit=10)
