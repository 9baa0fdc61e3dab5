"""Retention policies and runs (issue 13.4): per kind and department, delete or archive, dry run, holds, claims across two stores."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from mailboxes import retention
from mailboxes.documents import INCOMING, RECEIPTS, register_folders
from mailboxes.ingest import prepare
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from mailserver import config as config_mod
from mailserver import retention_job
from mailserver.retention_job import RetentionJob
from tests.conftest import FAST_HASHER

from .test_store import make_message

NOW = datetime.now(timezone.utc)
LAST_YEAR = datetime(NOW.year - 1, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
async def hybrid(storage_url):
    m = await open_mailboxes(StorageConfig(url=storage_url, mode="hybrid", departments=("finance",)),
                             hasher=FAST_HASHER)
    await m.directory.add_domain("city.test")
    await m.directory.add_department("finance", "财务处")
    await m.directory.add_department("office", "办公室")
    yield m
    await m.close()



async def _count(mb, acct, folder: str) -> int:
    return len(await mb.store.messages((await mb.store.folder(acct, folder)).ref))


async def test_department_policy_beats_the_general_one_and_dry_run_changes_nothing(hybrid):
    mb = hybrid
    fin = await mb.add_account("cai@city.test", password="pw", department="finance")
    off = await mb.add_account("ban@city.test", password="pw", department="office")
    for acct in (fin, off):
        for days_ago in (5, 40):
            await mb.store.append(acct, "Trash", prepare(make_message(f"{days_ago} days")),
                                  internal_date=NOW - timedelta(days=days_ago))
    await retention.set_policy(mb.router.central, "trash", 30, "delete")
    await retention.set_policy(mb.router.central, "trash", 3, "delete", department="finance")
    assert [(p.folder_kind, p.department_code, p.days) for p in await retention.list_policies(mb.router.central)] \
        == [("trash", "", 30), ("trash", "finance", 3)]
    dry = await retention.run(mb.store, dry_run=True)
    assert sorted((i.account, i.due) for i in dry.items) == [("ban@city.test", 1), ("cai@city.test", 2)]
    assert (await _count(mb, fin, "Trash"), await _count(mb, off, "Trash")) == (2, 2)
    rep = await retention.run(mb.store)
    assert (rep.deleted, rep.kept, rep.accounts) == (3, 0, 2)
    assert (await _count(mb, fin, "Trash"), await _count(mb, off, "Trash")) == (0, 1)
    audit = await mb.directory.audit_entries()
    assert [e for e in audit if e["action"] == "retention.run"]


async def test_a_department_hold_keeps_its_mail_in_its_own_database(hybrid):
    mb = hybrid
    fin = await mb.add_account("cai@city.test", password="pw", department="finance")
    await mb.store.append(fin, "INBOX", prepare(make_message("old")), internal_date=NOW - timedelta(days=400))
    await retention.set_policy(mb.router.central, "inbox", 30, "delete")
    h = await mb.store.holds.add("audit 2026", actor="root", department="finance")
    assert (await retention.run(mb.store)).kept == 1
    assert await _count(mb, fin, "INBOX") == 1
    await mb.store.holds.release(h.id, actor="root")
    assert (await retention.run(mb.store)).deleted == 1


async def test_archive_action_moves_old_mail_to_the_year_archive(hybrid):
    mb = hybrid
    off = await mb.add_account("ban@city.test", password="pw", department="office")
    await mb.store.append(off, "Sent", prepare(make_message("last year")), internal_date=LAST_YEAR)
    await mb.store.append(off, "Sent", prepare(make_message("today")), internal_date=NOW)
    await retention.set_policy(mb.router.central, "sent", 30, "archive")
    rep = await retention.run(mb.store)
    assert (rep.archived, rep.deleted) == (1, 0)
    assert await _count(mb, off, "Sent") == 1
    assert await _count(mb, off, f"Archive/{LAST_YEAR.year}/Sent") == 1


async def test_two_stores_running_at_once_do_each_account_once(storage_url):
    m1 = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    m2 = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await m1.directory.add_domain("city.test")
        accts = [await m1.add_account(f"u{i}@city.test", password="pw") for i in range(6)]
        for a in accts:
            for k in range(3):
                await m1.store.append(a, "Junk", prepare(make_message(f"spam {k}")),
                                      internal_date=NOW - timedelta(days=20))
        await retention.set_policy(m1.router.central, "junk", 10, "delete")
        day = timedelta(days=1)
        r1, r2 = await asyncio.gather(retention.run(m1.store, min_interval=day, batch=2),
                                      retention.run(m2.store, min_interval=day, batch=2))
        assert r1.accounts + r2.accounts == 6 and r1.skipped + r2.skipped == 6
        assert r1.deleted + r2.deleted == 18
        # Within min_interval nobody redoes an account; the claim was released (last_run_at set).
        again = await retention.run(m2.store, min_interval=day)
        assert (again.accounts, again.skipped) == (0, 6)
        for a in accts:
            assert await _count(m1, a, "Junk") == 0
    finally:
        await m1.close()
        await m2.close()


async def test_the_server_job_runs_retention_on_its_schedule(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.append(acct, "Junk", prepare(make_message("spam")), internal_date=NOW - timedelta(days=20))
    await retention.set_policy(mb.router.central, "junk", 10, "delete")
    job = RetentionJob(mb.store, interval=3600, first_delay=0).start()
    try:
        for _ in range(3000):  # a liveness bound, not a timing assertion
            if await _count(mb, acct, "Junk") == 0:
                break
            await asyncio.sleep(0.01)
        assert await _count(mb, acct, "Junk") == 0
    finally:
        await job.close()


async def test_the_document_register_folders_are_records_no_policy_deletes(mb):
    """收文 and 回执 of the documents account are what a registered document is served from: a policy
    for "other" folders empties everyone's other folders, the documents account's own included, not them."""
    docs = await mb.add_account("documents@city.test", password="pw")
    staff = await mb.add_account("wang@city.test", password="pw")
    for acct, name in ((docs, INCOMING), (docs, RECEIPTS), (docs, "Scratch"), (staff, "Projects")):
        await mb.store.create_folder(acct, name)
        await mb.store.append(acct, name, prepare(make_message(f"{name} old")), internal_date=NOW - timedelta(days=90))
    await retention.set_policy(mb.router.central, "other", 30, "delete")
    records = register_folders("Documents@City.test")
    dry = await retention.run(mb.store, dry_run=True, records=records)
    assert sorted((i.account, i.folder) for i in dry.items) == [("documents@city.test", "Scratch"),
                                                               ("wang@city.test", "Projects")]
    rep = await retention.run(mb.store, records=records)
    assert rep.deleted == 2
    assert [await _count(mb, docs, name) for name in (INCOMING, RECEIPTS, "Scratch")] == [1, 1, 0]
    assert await _count(mb, staff, "Projects") == 0
    assert register_folders("") == frozenset()


async def test_the_scheduled_job_spares_the_register_folders_of_the_configured_documents_account(mb):
    cfg = config_mod.build({"server": {"data_dir": "/nonexistent"}, "retention": {"interval": 0},
                            "documents": {"org": "futian", "address": "Documents@city.test"}})
    [job] = await retention_job.start(SimpleNamespace(config=cfg, mailboxes=mb))
    try:
        assert job.records == {("documents@city.test", INCOMING), ("documents@city.test", RECEIPTS)}
    finally:
        await job.close()
