"""The store API on SQLite and on a real PostgreSQL: folders, delivery, flags, expunge, copy, changes, search."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import pytest

from mailboxes import errors
from mailboxes.charsets import decode_transfer
from mailboxes.ingest import prepare
from mailboxes.mime import ParsedMessage
from mailboxes.model import Flag
from mailboxes.partitions import StorageConfig
from mailboxes.provisioning import NewAccount
from mailboxes.service import open_mailboxes
from mailboxes.store import Delivery
from tests.conftest import FAST_HASHER


def make_message(subject: str = "Hello", body: str = "Quarterly report attached.", sender: str = "a@city.test",
                 to: str = "b@city.test", size_pad: int = 0) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = "Mon, 02 Nov 2026 10:00:00 +0800"
    m["Message-ID"] = f"<{abs(hash((subject, body, size_pad)))}@city.test>"
    m.set_content(body + ("\n" + "x" * size_pad if size_pad else ""))
    return bytes(m)


async def test_new_account_has_inbox_and_special_use_folders(mb):
    acct = await mb.add_account("Alice@City.test", password="pw", display_name="张三")
    assert acct.address == "alice@city.test"
    names = {f.name: f.special_use for f in await mb.store.folders(acct)}
    assert names == {"INBOX": None, "Drafts": "\\Drafts", "Sent": "\\Sent", "Trash": "\\Trash",
                     "Junk": "\\Junk", "Archive": "\\Archive"}


async def test_append_assigns_increasing_uids_and_modseq(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    inbox = await mb.store.folder(acct, "inbox")
    r1 = await mb.store.append(acct, "INBOX", prepare(make_message("one")))
    r2 = await mb.store.append(acct, "INBOX", prepare(make_message("two")), flags=int(Flag.SEEN),
                               keywords=["$Important"])
    assert (r1.uid, r2.uid) == (1, 2)
    assert r1.uidvalidity == inbox.uidvalidity
    metas = await mb.store.messages(inbox.ref)
    assert [m.uid for m in metas] == [1, 2]
    assert metas[1].flag_names() == ["\\Seen", "$Important"]
    assert metas[1].modseq > metas[0].modseq
    after = await mb.store.folder(acct, "INBOX")
    assert after.uidnext == 3 and after.highestmodseq >= metas[1].modseq


@pytest.mark.slow
async def test_circular_to_2000_recipients_is_one_blob(mb):
    accts = await mb.add_accounts([NewAccount(f"u{i}@city.test") for i in range(2000)])  # each with its INBOX
    raw = make_message("全体通知", "请各部门于本周五前报送材料。")
    res = await mb.store.deliver(Delivery(prepare(raw), tuple((a, "INBOX") for a in accts)))
    assert all(not isinstance(r, Exception) for r in res.results)
    async with mb.router.central.read() as conn:
        from sqlalchemy import text
        blobs = (await conn.execute(text("SELECT count(*) FROM blobs"))).scalar()
        msgs = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar()
    assert (blobs, msgs) == (1, 2000)
    # Another delivery of the same bytes reuses the blob too.
    await mb.store.deliver(Delivery(prepare(raw), ((accts[0], "INBOX"),)))
    async with mb.router.central.read() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM blobs"))).scalar() == 1


async def test_raw_bytes_come_back_exactly(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    raw = make_message("bytes") + b"trailing\r\n\x00odd bytes \xff\xfe\r\n"
    r = await mb.store.append(acct, "INBOX", prepare(raw))
    meta = (await mb.store.messages(r.folder))[0]
    assert await mb.store.raw(r.folder.partition, meta.blob_id) == raw
    assert meta.size == len(raw)


async def test_concurrent_deliveries_share_commits_and_lose_nothing(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    msgs = [prepare(make_message(f"m{i}", f"body {i}")) for i in range(200)]
    results = await asyncio.gather(*(mb.store.deliver(Delivery(m, ((acct, "INBOX"),))) for m in msgs))
    uids = sorted(r.results[0].uid for r in results)
    assert uids == list(range(1, 201))
    committer = mb.store._committers["main"]
    assert committer.items >= 200 and committer.batches < 200  # grouped
    inbox = await mb.store.folder(acct, "INBOX")
    assert len(await mb.store.messages(inbox.ref)) == 200


async def test_quota_refuses_with_clear_error_and_keeps_other_recipients(mb):
    small = await mb.add_account("small@city.test", password="pw", quota_bytes=3000)
    big = await mb.add_account("big@city.test", password="pw")
    raw = make_message("fits", size_pad=1000)
    await mb.store.append(small, "INBOX", prepare(raw))
    res = await mb.store.deliver(Delivery(prepare(make_message("second", size_pad=1500)),
                                          ((small, "INBOX"), (big, "INBOX"))))
    assert isinstance(res.results[0], errors.OverQuota) and not res.results[0].permanent
    assert "full" in str(res.results[0])
    assert res.results[1].uid == 1
    with pytest.raises(errors.OverQuota) as ei:
        await mb.store.append(small, "INBOX", prepare(make_message("huge", size_pad=5000)))
    assert ei.value.permanent
    q = await mb.store.quota(small)
    assert q.used_messages == 1 and q.used_bytes == len(raw)


async def test_flags_store_modes_unchangedsince_and_changes_since(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    for i in range(5):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}")))
    inbox = await mb.store.folder(acct, "INBOX")
    base = (await mb.store.folder(acct, "INBOX")).highestmodseq
    changed, failed = await mb.store.store_flags(inbox.ref, [1, 2, 3], "add", int(Flag.SEEN))
    assert [m.uid for m in changed] == [1, 2, 3] and failed == []
    # Adding a flag already set changes nothing.
    changed, _ = await mb.store.store_flags(inbox.ref, [1, 2, 3], "add", int(Flag.SEEN))
    assert changed == []
    changed, _ = await mb.store.store_flags(inbox.ref, [2], "add", 0, ["Work", "$Label1"])
    assert changed[0].keywords == frozenset({"Work", "$Label1"})
    changed, _ = await mb.store.store_flags(inbox.ref, [2], "remove", int(Flag.SEEN), ["Work"])
    assert changed[0].flag_names() == ["$Label1"]
    changed, _ = await mb.store.store_flags(inbox.ref, [4], "replace", int(Flag.FLAGGED | Flag.DRAFT))
    assert changed[0].flag_names() == ["\\Flagged", "\\Draft"]
    ch = await mb.store.changes_since(inbox.ref, base)
    assert {m.uid for m in ch.changed} == {1, 2, 3, 4}
    # UNCHANGEDSINCE (RFC 7162 §3.1.3): uid 4 changed after `base`, so it fails.
    m1 = (await mb.store.messages(inbox.ref))[0].modseq
    _, failed = await mb.store.store_flags(inbox.ref, [4, 5], "add", int(Flag.ANSWERED), unchanged_since=base)
    assert failed == [4]
    assert m1 > base


async def test_expunge_leaves_tombstones_for_qresync(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    for i in range(4):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}")))
    inbox = await mb.store.folder(acct, "INBOX")
    before = (await mb.store.folder(acct, "INBOX")).highestmodseq
    await mb.store.store_flags(inbox.ref, [2, 3], "add", int(Flag.DELETED))
    assert await mb.store.expunge(inbox.ref, uids=[3, 4]) == [3]  # UID EXPUNGE: only deleted ones in set
    assert await mb.store.expunge(inbox.ref) == [2]
    ch = await mb.store.changes_since(inbox.ref, before)
    assert ch.vanished == [2, 3]
    assert [m.uid for m in await mb.store.messages(inbox.ref)] == [1, 4]
    q = await mb.store.quota(acct)
    assert q.used_messages == 2


async def test_copy_and_move_give_uid_pairs(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    for i in range(3):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}")))
    inbox = await mb.store.folder(acct, "INBOX")
    arch = await mb.store.folder(acct, "Archive")
    uidv, pairs = await mb.store.copy(acct, inbox.ref, [1, 3], arch.ref)
    assert uidv == arch.uidvalidity and pairs == [(1, 1), (3, 2)]
    uidv, pairs = await mb.store.move(acct, inbox.ref, [2], arch.ref)
    assert pairs == [(2, 3)]
    assert [m.uid for m in await mb.store.messages(inbox.ref)] == [1, 3]
    assert [m.uid for m in await mb.store.messages(arch.ref)] == [1, 2, 3]


async def test_copy_in_chunks_keeps_order_flags_and_usage(mb, monkeypatch):
    """COPY inserts its rows a chunk at a time (the event loop is served between chunks); nothing else changes."""
    from mailboxes import store as store_mod

    monkeypatch.setattr(store_mod, "COPY_CHUNK", 3)
    acct = await mb.add_account("a@city.test", password="pw")
    for i in range(7):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}")), flags=int(Flag.SEEN) if i % 2 else 0)
    inbox, arch = await mb.store.folder(acct, "INBOX"), await mb.store.folder(acct, "Archive")
    before = (await mb.store.quota(acct)).used_messages
    _uidv, pairs = await mb.store.copy(acct, inbox.ref, range(1, 8), arch.ref)
    assert pairs == [(u, u) for u in range(1, 8)]
    copied = await mb.store.messages(arch.ref)
    assert [(m.uid, m.flags) for m in copied] == [(m.uid, m.flags) for m in await mb.store.messages(inbox.ref)]
    assert (await mb.store.quota(acct)).used_messages == before + 7


async def test_folder_create_rename_delete(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.create_folder(acct, "项目/2026")
    with pytest.raises(errors.AlreadyExists):
        await mb.store.create_folder(acct, "项目/2026")
    await mb.store.append(acct, "项目/2026", prepare(make_message("x")))
    await mb.store.rename_folder(acct, "项目", "Projects")
    names = {f.name for f in await mb.store.folders(acct)}
    assert "Projects/2026" in names and "项目/2026" not in names
    await mb.store.delete_folder(acct, "Projects/2026")
    assert "Projects/2026" not in {f.name for f in await mb.store.folders(acct)}
    assert (await mb.store.quota(acct)).used_messages == 0
    with pytest.raises(errors.InvalidInput):
        await mb.store.delete_folder(acct, "INBOX")
    with pytest.raises(errors.InvalidInput):
        await mb.store.create_folder(acct, "bad//name")


async def test_rename_inbox_moves_messages(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.append(acct, "INBOX", prepare(make_message("x")))
    await mb.store.rename_folder(acct, "INBOX", "Old")
    assert len(await mb.store.messages((await mb.store.folder(acct, "Old")).ref)) == 1
    assert len(await mb.store.messages((await mb.store.folder(acct, "INBOX")).ref)) == 0


async def test_search_english_and_chinese(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.append(acct, "INBOX", prepare(make_message("关于税收工作的通知", "请各部门于本周五前报送材料。")))
    await mb.store.append(acct, "INBOX", prepare(make_message("Budget", "The quarterly budget review.")))
    inbox = await mb.store.folder(acct, "INBOX")
    assert await mb.store.search_text(inbox.ref, "body", "报送") == {1}
    assert await mb.store.search_text(inbox.ref, "body", "部门于本周") == {1}
    assert await mb.store.search_text(inbox.ref, "subject", "税收") == {1}
    assert await mb.store.search_text(inbox.ref, "body", "quarterly") == {2}
    assert await mb.store.search_text(inbox.ref, None, "QUARTER") == {2}  # prefix, case-insensitive
    assert await mb.store.search_text(inbox.ref, "body", "报告") == set()
    assert await mb.store.search_text(inbox.ref, "subject", "税") == {1}  # one character inside a run
    assert await mb.store.search_text(inbox.ref, "subject", "报") == set()
    assert await mb.store.search_text(inbox.ref, "body", "!!") is None


async def test_bus_announces_after_commit(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    inbox = await mb.store.folder(acct, "INBOX")
    listener = mb.store.bus.listen(inbox.ref)
    r = await mb.store.append(acct, "INBOX", prepare(make_message("x")))
    ev = listener.queue.get_nowait()
    assert ev.kind == "append" and ev.folder == inbox.ref
    # The event is sent after commit: the message is visible to a new reader now.
    assert [m.uid for m in await mb.store.messages(inbox.ref)] == [r.uid]
    listener.close()


async def test_status_counts(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    for i in range(4):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"m{i}")), flags=int(Flag.SEEN) if i < 2 else 0)
    inbox = await mb.store.folder(acct, "INBOX")
    await mb.store.store_flags(inbox.ref, [4], "add", int(Flag.DELETED))
    st = await mb.store.status(inbox.ref)
    assert (st.messages, st.unseen, st.deleted) == (4, 2, 1)
    assert st.size == sum(m.size for m in await mb.store.messages(inbox.ref))
    assert st.folder.uidnext == 5


@pytest.mark.parametrize("in_files", [False, True], ids=["in-database", "blob-directory"])
async def test_raw_range_reads_one_part_at_its_stored_offsets(storage_url, tmp_path, in_files):
    """Store.raw_range: exactly the bytes of a part (offsets of the stored parse), as a slice of the whole would be."""
    blob_dir = str(tmp_path / "blobs") if in_files else None
    mb = await open_mailboxes(StorageConfig(url=storage_url, blob_dir=blob_dir), hasher=FAST_HASHER)
    try:
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("a@city.test", password="pw")
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "a@city.test", "b@city.test", "两个附件"
        m.set_content("正文。\n")
        big, small = bytes(range(256)) * 4096, b"%PDF-1.7 small"
        m.add_attachment(big, maintype="application", subtype="octet-stream", filename="big.bin")
        m.add_attachment(small, maintype="application", subtype="pdf", filename="small.pdf")
        raw = bytes(m)
        r = await mb.store.append(acct, "INBOX", prepare(raw))
        [meta] = await mb.store.messages(r.folder)
        parsed = ParsedMessage.from_json((await mb.store.parsed(r.folder.partition, [meta.blob_id]))[meta.blob_id])
        parts = {p.filename: p for p in parsed.body.parts}
        for name, want in (("big.bin", big), ("small.pdf", small)):
            p = parts[name]
            body = await mb.store.raw_range(r.folder.partition, meta.blob_id, p.body_start, p.body_end)
            assert body == raw[p.body_start:p.body_end]
            assert decode_transfer(body, p.encoding) == want
        assert await mb.store.raw_range(r.folder.partition, meta.blob_id, 5, 5) == b""
        n = len(raw)  # past the end, as a slice: cut short, or empty
        assert await mb.store.raw_range(r.folder.partition, meta.blob_id, n - 3, n + 100) == raw[n - 3:]
        assert await mb.store.raw_range(r.folder.partition, meta.blob_id, n + 5, n + 10) == b""
        with pytest.raises(errors.NotFound):
            await mb.store.raw_range(r.folder.partition, meta.blob_id + 1000, 0, 10)
        with pytest.raises(ValueError):
            await mb.store.raw_range(r.folder.partition, meta.blob_id, 10, 5)
    finally:
        await mb.close()
