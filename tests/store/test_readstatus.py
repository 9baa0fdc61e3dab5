"""Read status in the store (SQLite and PostgreSQL): tracked copies, first read, recall, and STORE's cost."""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mailboxes.errors import NotFound
from mailboxes.ingest import prepare
from mailboxes.model import Flag
from mailboxes.readstatus import MARK_CHUNK, AlreadyRead
from mailboxes.store import Delivery
from tests.store.test_partitions import dept_mb  # noqa: F401 - the fixture (finance in its own database)
from tests.store.test_store import make_message

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)


async def _send(mb, sender, recipients, subject="会议通知"):
    """What delivery.submit does for a local sender: rows first, copies carry their track ids, then times."""
    raw = make_message(subject, sender=sender.address, to=", ".join(r.address for r in recipients))
    p = prepare(raw)
    tracks = await mb.store.readstatus.start(sender, f"<{subject}@city.test>", "Q1", subject, recipients, T0)
    res = await mb.store.deliver(Delivery(p, tuple((r, "INBOX") for r in recipients),
                                          tracks=tuple(tracks[r.id] for r in recipients)))
    await mb.store.readstatus.delivered([tracks[r.id] for r in recipients], [], T0)
    sent_id = await mb.store.readstatus.find(sender, f"<{subject}@city.test>")
    return sent_id, {r.address: x for r, x in zip(recipients, res.results)}


@contextlib.contextmanager
def statements(*dbs):
    """The SQL statements run meanwhile (on any engine: Database.write_sync runs a command on an engine of
    its own around the writer's connection, so the hook is on the Engine class; the tests run nothing else)."""
    seen: list[str] = []

    def hook(_conn, _cursor, statement, *_args):
        seen.append(statement)
    event.listen(Engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", hook)


async def test_first_read_is_recorded_per_recipient_across_partitions(dept_mb):
    mb = dept_mb
    sender = await mb.add_account("zhang@city.test", password="pw")
    fin = await mb.add_account("cai@city.test", password="pw", department="finance")
    off = await mb.add_account("wang@city.test", password="pw")
    sent_id, res = await _send(mb, sender, [fin, off])
    assert res["cai@city.test"].folder.partition == "dept-finance"
    st = await mb.store.readstatus.status(sender, sent_id)
    assert [(c.address, c.delivered_at, c.first_read_at) for c in st.copies] == [
        ("cai@city.test", T0, None), ("wang@city.test", T0, None)]
    r = res["cai@city.test"]
    await mb.store.store_flags(r.folder, [r.uid], "add", int(Flag.FLAGGED))  # not a read
    assert (await mb.store.readstatus.status(sender, sent_id)).read_by == ()
    await mb.store.store_flags(r.folder, [r.uid], "add", int(Flag.SEEN))
    st = await mb.store.readstatus.status(sender, sent_id)
    assert st.read_by == ("cai@city.test",)
    first = st.copies[0].first_read_at
    await mb.store.store_flags(r.folder, [r.uid], "remove", int(Flag.SEEN))
    await mb.store.store_flags(r.folder, [r.uid], "replace", int(Flag.SEEN), ["$Important"])
    assert (await mb.store.readstatus.status(sender, sent_id)).copies[0].first_read_at == first  # the first stays
    # Only the sender sees it.
    with pytest.raises(NotFound):
        await mb.store.readstatus.status(off, sent_id)


async def test_keyword_store_records_the_read_too(mb):
    sender = await mb.add_account("zhang@city.test", password="pw")
    a = await mb.add_account("li@city.test", password="pw")
    sent_id, res = await _send(mb, sender, [a])
    r = res["li@city.test"]
    await mb.store.store_flags(r.folder, [r.uid], "add", int(Flag.SEEN), ["$Work"])  # the slow path
    assert (await mb.store.readstatus.status(sender, sent_id)).read_by == ("li@city.test",)


async def test_recall_refused_after_a_read_removes_nothing(mb):
    sender = await mb.add_account("zhang@city.test", password="pw")
    a = await mb.add_account("li@city.test", password="pw")
    b = await mb.add_account("wang@city.test", password="pw")
    sent_id, res = await _send(mb, sender, [a, b])
    r = res["li@city.test"]
    await mb.store.store_flags(r.folder, [r.uid], "add", int(Flag.SEEN))
    with pytest.raises(AlreadyRead) as exc:
        await mb.store.readstatus.recall(mb.store, sender, sent_id)
    assert exc.value.addresses == ("li@city.test",)
    for acct in (a, b):
        assert len(await mb.store.messages((await mb.store.folder(acct, "INBOX")).ref)) == 1
    st = await mb.store.readstatus.status(sender, sent_id)
    assert st.recalled_at is None and not st.recallable


async def test_recall_removes_moved_copied_and_other_partition_copies(dept_mb):
    mb = dept_mb
    sender = await mb.add_account("zhang@city.test", password="pw")
    fin = await mb.add_account("cai@city.test", password="pw", department="finance")
    off = await mb.add_account("wang@city.test", password="pw")
    other = make_message("unrelated", sender="x@city.test")
    await mb.store.append(off, "INBOX", prepare(other))
    sent_id, res = await _send(mb, sender, [fin, off])
    # wang files the copy in a folder of its own, and copies it to Archive too.
    proj = await mb.store.create_folder(off, "项目")
    inbox = await mb.store.folder(off, "INBOX")
    await mb.store.move(off, inbox.ref, [res["wang@city.test"].uid], proj.ref)
    [moved] = await mb.store.messages(proj.ref)
    await mb.store.copy(off, proj.ref, [moved.uid], (await mb.store.folder(off, "Archive")).ref)
    listener = mb.store.bus.listen(proj.ref)
    assert (await mb.store.readstatus.status(sender, sent_id)).recallable
    out = await mb.store.readstatus.recall(mb.store, sender, sent_id)
    assert out.removed == 3 and out.read_meanwhile == ()
    assert await mb.store.messages(proj.ref) == []
    assert await mb.store.messages((await mb.store.folder(off, "Archive")).ref) == []
    assert len(await mb.store.messages(inbox.ref)) == 1  # the unrelated message stays
    assert await mb.store.messages((await mb.store.folder(fin, "INBOX")).ref) == []
    assert (await listener.get()).kind == "expunge"
    st = await mb.store.readstatus.status(sender, sent_id)
    assert st.recalled_at is not None and all(c.recalled_at for c in st.copies)
    audit = await mb.directory.audit_entries(5)
    assert audit[0]["action"] == "message.recall" and audit[0]["actor"] == "zhang@city.test"


async def test_a_read_racing_the_recall_is_reported(mb):
    """\\Seen committed after the recall decided but before the delete: the sender is told."""
    sender = await mb.add_account("zhang@city.test", password="pw")
    a = await mb.add_account("li@city.test", password="pw")
    sent_id, res = await _send(mb, sender, [a])
    r = res["li@city.test"]
    rs = mb.store.readstatus
    claim = rs._claim_recall

    async def claim_then_read(*args):
        copies = await claim(*args)
        await mb.store.store_flags(r.folder, [r.uid], "add", int(Flag.SEEN))  # the reader, between the two
        return copies
    rs._claim_recall = claim_then_read
    out = await rs.recall(mb.store, sender, sent_id)
    assert out.removed == 1 and out.read_meanwhile == ("li@city.test",)
    st = await rs.status(sender, sent_id)
    assert st.copies[0].first_read_at is not None and st.copies[0].recalled_at is not None


@pytest.mark.slow
async def test_store_seen_on_10000_untracked_messages_adds_no_statement(mb):
    """The read status costs a bulk STORE nothing: the track ids come back with the flags."""
    sender = await mb.add_account("zhang@city.test", password="pw")
    a = await mb.add_account("li@city.test", password="pw")
    inbox = await mb.store.folder(a, "INBOX")
    await mb.store.append(a, "INBOX", prepare(make_message("bulk")))
    while len(uids := [m.uid for m in await mb.store.messages(inbox.ref)]) < 10_000:  # doubling COPY
        await mb.store.copy(a, inbox.ref, uids[:10_000 - len(uids)], inbox.ref)
    part = await mb.store._db(mb.store.home(a))
    await mb.store.catch_up_index(mb.store.home(a))  # the background indexer has nothing left to do meanwhile
    await mb.store.indexer(mb.store.home(a)).settled()  # nor a batch of its own still being written
    with statements(mb.router.central, part) as plain:
        changed, _ = await mb.store.store_flags(inbox.ref, uids, "add", int(Flag.SEEN))
    assert len(changed) == 10_000
    assert not [s for s in plain if "sent_copies" in s]
    # BEGIN (SQLite) or NOTIFY (PG), the folder's MODSEQ, one UPDATE ... RETURNING for every message.
    assert len(plain) == 3, plain

    # The same STORE when 1,200 of them are colleagues' tracked copies (copied from one tracked message:
    # every copy carries its id): the mail database sees the same statements, the central one a
    # set-based UPDATE per MARK_CHUNK ids.
    await mb.store.store_flags(inbox.ref, uids, "remove", int(Flag.SEEN))
    sent_id, res = await _send(mb, sender, [a], subject="tracked")
    tracked = res["li@city.test"].uid
    await mb.store.copy(a, inbox.ref, [tracked], inbox.ref)
    uids = [m.uid for m in await mb.store.messages(inbox.ref)]
    await mb.store.catch_up_index(mb.store.home(a))
    await mb.store.indexer(mb.store.home(a)).settled()
    with statements(mb.router.central, part) as seen:
        changed, _ = await mb.store.store_flags(inbox.ref, uids, "add", int(Flag.SEEN))
    assert len(changed) == 10_002
    marks = [s for s in seen if "sent_copies" in s]
    assert len(marks) == 1 and len(seen) - len(marks) <= len(plain) + 2  # + the central BEGIN/COMMIT
    assert (await mb.store.readstatus.status(sender, sent_id)).read_by == ("li@city.test",)
    assert MARK_CHUNK >= 2
