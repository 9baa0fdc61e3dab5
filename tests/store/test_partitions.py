"""Partition modes: department databases, year archives (interrupted and resumed), Chinese mail end to end."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mailboxes import errors, mime
from mailboxes.archive import archive_year
from mailboxes.ingest import prepare
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER
from tests.store.test_store import make_message


async def _count(db, sql: str) -> int:
    async with db.read() as conn:
        return (await conn.execute(text(sql))).scalar()


@pytest.fixture
async def dept_mb(storage_url):
    m = await open_mailboxes(StorageConfig(url=storage_url, mode="hybrid", departments=("finance",)),
                             hasher=FAST_HASHER)
    await m.directory.add_domain("city.test")
    await m.directory.add_department("finance", "财务处")
    await m.directory.add_department("office", "办公室")
    yield m
    await m.close()


async def test_department_with_own_database_keeps_its_mail_there(dept_mb):
    mb = dept_mb
    fin = await mb.add_account("cai@city.test", password="pw", department="finance")
    off = await mb.add_account("ban@city.test", password="pw", department="office")
    assert mb.store.home(fin) == "dept-finance" and mb.store.home(off) == "main"
    from mailboxes.store import Delivery
    res = await mb.store.deliver(Delivery(prepare(make_message("会议通知")), ((fin, "INBOX"), (off, "INBOX"))))
    assert [r.folder.partition for r in res.results] == ["dept-finance", "main"]
    dept_db = await mb.router.database("dept-finance")
    assert await _count(dept_db, "SELECT count(*) FROM messages") == 1
    assert await _count(mb.router.central, "SELECT count(*) FROM messages") == 1
    # The department database has no directory tables: the directory stays central.
    with pytest.raises(DBAPIError, match=r'no such table: accounts|relation "accounts" does not exist'):
        await _count(dept_db, "SELECT count(*) FROM accounts")  # SQLite's and PostgreSQL's words
    inbox = await mb.store.folder(fin, "INBOX")
    assert await mb.store.search_text(inbox.ref, "subject", "会议") == {1}


@pytest.mark.slow
async def test_year_archive_moves_a_closed_year_and_survives_interruption(dept_mb):
    mb = dept_mb
    acct = await mb.add_account("cai@city.test", password="pw", department="finance")
    old = datetime(2025, 6, 1, tzinfo=timezone.utc)
    new = datetime(datetime.now(timezone.utc).year, 1, 2, tzinfo=timezone.utc)
    for i in range(450):
        await mb.store.append(acct, "INBOX", prepare(make_message(f"old {i}", f"老邮件 {i}")), internal_date=old,
                              flags=1 if i % 2 else 0)
    await mb.store.append(acct, "Sent", prepare(make_message("sent old")), internal_date=old)
    await mb.store.append(acct, "INBOX", prepare(make_message("this year")), internal_date=new)
    inbox = await mb.store.folder(acct, "INBOX")
    hm = inbox.highestmodseq
    # Interrupted after the copy of the first batch, before its removal from the source.
    await archive_year(mb.store, 2025, stop_after=1)
    archive_db = await mb.router.database("archive-2025")
    # Batches go folder by folder in creation order (INBOX first), in UID order:
    # the first batch is INBOX's 200 lowest UIDs, whatever the back-end.
    assert await _count(archive_db, "SELECT count(*) FROM messages") == 200
    first = await mb.store.folder(acct, "Archive/2025/INBOX")
    assert [m.uid for m in await mb.store.messages(first.ref)] == list(range(1, 201))
    assert await _count(archive_db, "SELECT count(*) FROM archive_imports") == 200
    assert len(await mb.store.messages(inbox.ref)) == 451  # nothing removed yet
    rep = await archive_year(mb.store, 2025)  # run again: finishes without duplicates
    assert rep.moved == 451
    assert await _count(archive_db, "SELECT count(*) FROM messages") == 451
    assert [m.uid for m in await mb.store.messages(inbox.ref)] == [451]
    names = {f.name for f in await mb.store.folders(acct)}
    assert {"Archive/2025/INBOX", "Archive/2025/Sent"} <= names
    arch = await mb.store.folder(acct, "Archive/2025/INBOX")
    metas = await mb.store.messages(arch.ref)
    assert len(metas) == 450 and sum(1 for m in metas if m.flags & 1) == 225
    assert await mb.store.search_text(arch.ref, "body", "老邮件") == {m.uid for m in metas}
    # IMAP clients learn of the removal through tombstones.
    ch = await mb.store.changes_since(inbox.ref, hm)
    assert len(ch.vanished) == 450
    # Archived mail no longer counts against the quota.
    assert (await mb.store.quota(acct)).used_messages == 1
    # A third run has nothing left to do.
    assert (await archive_year(mb.store, 2025)).moved == 0


async def test_archive_refuses_open_year_and_wrong_mode(storage_url):
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        with pytest.raises(errors.InvalidInput, match="mode"):
            await archive_year(mb.store, 2025)
    finally:
        await mb.close()
    mb = await open_mailboxes(StorageConfig(url=storage_url, mode="year"), hasher=FAST_HASHER)
    try:
        with pytest.raises(errors.InvalidInput, match="closed year"):
            await archive_year(mb.store, datetime.now(timezone.utc).year)
    finally:
        await mb.close()


def gbk_message() -> bytes:
    subject = "=?GB2312?B?" + base64.b64encode("关于报送年度税收材料的通知".encode("gb2312")).decode() + "?="
    body = "各部门：请于本周五前报送税收统计材料。\n".encode("gbk")
    attach = base64.b64encode(b"%PDF-1.4 fake").decode()
    fname = "".join(f"%{b:02X}" for b in "统计表.pdf".encode("gbk"))
    return (
        "From: =?GBK?B?" + base64.b64encode("张伟".encode("gbk")).decode() + "?= <zhang@city.test>\r\n"
        "To: wang@city.test\r\n"
        f"Subject: {subject}\r\n"
        "Date: Mon, 02 Nov 2026 10:00:00 +0800\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=GBK\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + body + (
        "\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment; filename*=GBK''{fname}\r\n\r\n{attach}\r\n--b1--\r\n"
    ).encode()


async def test_gbk_message_decoded_in_store_and_found_by_search(storage_url):
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("wang@city.test", password="pw")
        r = await mb.store.append(acct, "INBOX", prepare(gbk_message()))
        meta = (await mb.store.messages(r.folder))[0]
        stored = mime.ParsedMessage.from_json((await mb.store.parsed(r.folder.partition, [meta.blob_id]))[meta.blob_id])
        assert stored.envelope.subject_decoded == "关于报送年度税收材料的通知"
        assert stored.envelope.from_[0].name_decoded == "张伟"
        assert [a.filename for a in stored.attachments] == ["统计表.pdf"]
        assert await mb.store.search_text(r.folder, "body", "税收") == {r.uid}  # two characters, from the body
        assert await mb.store.search_text(r.folder, "body", "周五") == {r.uid}
        assert await mb.store.search_text(r.folder, "subject", "年度") == {r.uid}
        assert await mb.store.search_text(r.folder, "addrs", "张伟") == {r.uid}
        assert await mb.store.search_text(r.folder, "body", "统计表") == {r.uid}  # attachment name indexed
        assert await mb.store.search_text(r.folder, "body", "财政") == set()
    finally:
        await mb.close()
