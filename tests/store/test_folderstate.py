"""A folder's saved SELECT state (mailboxes.folderstate), on SQLite and PostgreSQL: brought up to date it reads as the whole folder does."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from sqlalchemy import delete, select, update

from mailboxes import folderstate
from mailboxes import schema as t
from mailboxes.ingest import prepare
from mailboxes.model import Flag
from tests.store.test_store import make_message
from tests.support.folderstates import record_loads

KEYWORDS = ("$Label1", "Work", "$Junk")


@pytest.fixture
def small(monkeypatch):
    """Folders of a few messages are saved (the threshold is 1,000 in service)."""
    monkeypatch.setattr(folderstate, "SAVE_MIN", 4)


@pytest.fixture
def loads(monkeypatch):
    return record_loads(monkeypatch)


def whole(metas) -> tuple:
    """The columns SELECT needs, from the full listing (which never reads a saved state)."""
    kws = {m.uid: m.keywords for m in metas if m.keywords}
    return ([m.uid for m in metas], [m.modseq for m in metas], bytes(m.flags & 0xFF for m in metas), kws,
            frozenset().union(*kws.values()) if kws else frozenset())


def columns(got) -> tuple:
    return got.uids, got.modseqs, got.flags, got.keywords, got.in_use


async def saved_row(mb, ref):
    db = await mb.store._db(ref.partition)
    async with db.read() as conn:
        return (await conn.execute(select(t.folder_states).where(t.folder_states.c.folder_id == ref.id))).first()


async def fill(mb, acct, n: int, folder: str = "INBOX") -> None:
    for k in range(n):
        await mb.store.append(acct, folder, prepare(make_message(f"m{k}")), flags=int(Flag.SEEN) if k % 3 == 0 else 0,
                              keywords=(KEYWORDS[k % 3],) if k % 4 == 0 else ())


async def read_once(mb, n: int, folder: str = "INBOX"):
    """An account whose ``folder`` holds n messages, read by SELECT's read once and saved if it wants to be:
    (account, folder, what that read gave)."""
    acct = await mb.add_account("a@city.test", password="pw")
    if folder != "INBOX":
        await mb.store.create_folder(acct, folder)
    await fill(mb, acct, n, folder)
    f = await mb.store.folder(acct, folder)
    got = await mb.store.listing_state(f.ref)
    await mb.store.states.idle()
    return acct, f, got


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_saved_state_with_the_changes_since_reads_as_the_whole_folder(mb, small, loads, seed):
    rng = random.Random(seed)
    acct, inbox, first = await read_once(mb, 30)
    assert loads == [None] and first.behind == 30  # nothing saved yet: read whole, then saved
    row = await saved_row(mb, inbox.ref)
    assert row is not None and row.count == 30 and row.modseq == first.folder.highestmodseq
    for step in range(40):
        uids = (await mb.store.listing_state(inbox.ref)).uids
        what = rng.choice(["flags", "keywords", "expunge", "deliver", "deliver"])
        some = rng.sample(uids, min(len(uids), rng.randint(1, 3)))
        if what == "flags":
            await mb.store.store_flags(inbox.ref, some, rng.choice(["add", "remove", "replace"]),
                                       rng.choice([int(Flag.SEEN), int(Flag.FLAGGED), int(Flag.ANSWERED), 0]))
        elif what == "keywords":
            await mb.store.store_flags(inbox.ref, some, rng.choice(["add", "remove"]), 0, [rng.choice(KEYWORDS)])
        elif what == "expunge":
            await mb.store.store_flags(inbox.ref, some, "add", int(Flag.DELETED))
            await mb.store.expunge(inbox.ref)
        else:
            await fill(mb, acct, rng.randint(1, 3))
        got = await mb.store.listing_state(inbox.ref)
        assert columns(got) == whole((await mb.store.listing(inbox.ref)).metas), f"step {step}: {what}"
        assert got.folder.highestmodseq == (await mb.store.folder_by_ref(inbox.ref)).highestmodseq
        await mb.store.states.idle()
    used = [b for b in loads if b]
    assert len(used) >= 20, loads  # most reads came from a saved state and the changes since it


async def test_a_state_saved_by_one_process_serves_another(two_stores, small, loads):
    m1, m2, acct = two_stores
    await fill(m1, acct, 12)
    inbox = await m1.store.folder(acct, "INBOX")
    await m1.store.listing_state(inbox.ref)
    await m1.store.states.idle()
    await m1.store.store_flags(inbox.ref, [2, 5], "add", int(Flag.FLAGGED))
    got = await m2.store.listing_state(inbox.ref)
    assert loads == [None, 2]
    assert columns(got) == whole((await m2.store.listing(inbox.ref)).metas)


async def test_a_renamed_folder_is_not_read_from_the_state_saved_before(mb, small, loads):
    acct, old, _ = await read_once(mb, 8, "Old")
    await mb.store.rename_folder(acct, "Old", "New")
    new = await mb.store.folder(acct, "New")
    assert new.uidvalidity != old.uidvalidity
    got = await mb.store.listing_state(new.ref)
    assert loads == [None, None]  # saved under the old UIDVALIDITY: read whole, saved anew
    assert columns(got) == whole((await mb.store.listing(new.ref)).metas)
    await mb.store.states.idle()
    assert (await saved_row(mb, new.ref)).uidvalidity == new.uidvalidity


async def test_an_older_state_never_replaces_a_newer_one(mb, small):
    acct, inbox, before = await read_once(mb, 6)
    await fill(mb, acct, 6)
    after = await mb.store.listing_state(inbox.ref)  # 6 rows beyond the saved 6: saved again
    await mb.store.states.idle()
    assert (await saved_row(mb, inbox.ref)).modseq == after.folder.highestmodseq
    stale = await mb.store._save_state(inbox.ref, before.folder.uidvalidity, before.folder.highestmodseq,
                                       before.columns)
    assert stale is False
    row = await saved_row(mb, inbox.ref)
    assert row.modseq == after.folder.highestmodseq and row.count == 12


async def test_a_deleted_folder_takes_its_saved_state_with_it(mb, small):
    acct, f, _ = await read_once(mb, 6, "Gone")
    assert await saved_row(mb, f.ref) is not None
    await mb.store.delete_folder(acct, "Gone")
    assert await saved_row(mb, f.ref) is None


async def test_small_folders_are_read_whole_and_not_saved(mb):
    _, inbox, _ = await read_once(mb, 5)
    assert await saved_row(mb, inbox.ref) is None and mb.store.states.saved == 0


async def test_a_folder_mostly_changed_since_its_state_is_read_whole(mb, small, loads):
    _, inbox, _ = await read_once(mb, 12)
    await mb.store.store_flags(inbox.ref, range(1, 6), "add", int(Flag.FLAGGED))  # 5 of 12: over a third
    got = await mb.store.listing_state(inbox.ref)
    assert loads == [None, None]
    assert columns(got) == whole((await mb.store.listing(inbox.ref)).metas)


async def test_a_damaged_saved_state_is_ignored_and_replaced(mb, small, loads, caplog):
    _, inbox, _ = await read_once(mb, 8)
    db = await mb.store._db(inbox.ref.partition)
    for damage in ({"uids": b"\x01\x02\x03"}, {"keywords": "[1, 2]"}, {"keywords": '{"1": 7}'},
                   {"keywords": "not json"}):
        async with db.write() as conn:
            await conn.execute(update(t.folder_states).where(t.folder_states.c.folder_id == inbox.ref.id)
                               .values(**damage))
        caplog.clear()
        loads.clear()
        with caplog.at_level(logging.WARNING, logger="postroom.store"):
            got = await mb.store.listing_state(inbox.ref)
        assert loads == [None], damage
        assert columns(got) == whole((await mb.store.listing(inbox.ref)).metas)
        assert any("unreadable" in r.getMessage() for r in caplog.records)
        await mb.store.states.idle()
        assert (await saved_row(mb, inbox.ref)).modseq == got.folder.highestmodseq  # saved again


async def test_two_processes_saving_one_folder_at_once_both_succeed(two_stores, small):
    """On PostgreSQL two nodes may save the same folder in the same moment: no key collision, the newer stays."""
    m1, m2, acct = two_stores
    await fill(m1, acct, 8)
    inbox = await m1.store.folder(acct, "INBOX")
    a = await m1.store.listing_state(inbox.ref)
    await m1.store.states.idle()
    await fill(m1, acct, 2)
    b = await m2.store.listing_state(inbox.ref)
    await m2.store.states.idle()
    db = await m1.store._db(inbox.ref.partition)
    for _ in range(30):
        async with db.write() as conn:
            await conn.execute(delete(t.folder_states))
        got = await asyncio.gather(
            m1.store._save_state(inbox.ref, b.folder.uidvalidity, b.folder.highestmodseq, b.columns),
            m2.store._save_state(inbox.ref, b.folder.uidvalidity, b.folder.highestmodseq, b.columns),
            m1.store._save_state(inbox.ref, a.folder.uidvalidity, a.folder.highestmodseq, a.columns))
        assert got[:2] == [True, True]
        row = await saved_row(m1, inbox.ref)
        assert row.modseq == b.folder.highestmodseq and row.count == 10
