"""The hash-chained audit log: `postroom audit verify` names the first edited, deleted, reordered or truncated entry."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from mailboxes import auditlog
from mailboxes.db import open_database
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from mailserver import config as config_mod
from tests.conftest import FAST_HASHER

from .cli_support import cfg, ready_with_user, run  # noqa: F401 (cfg is a fixture)


def _sql(url: str, *statements: str) -> None:
    async def go() -> None:
        db = open_database(url)
        try:
            async with db.write() as conn:
                for s in statements:
                    await conn.execute(text(s))
        finally:
            await db.dispose()
    asyncio.run(go())


def _entries(cfg_path, n: int) -> None:
    async def go() -> None:
        mb = await open_mailboxes(config_mod.load(cfg_path).storage(), hasher=FAST_HASHER)
        try:
            for i in range(n):
                await mb.directory.audit("admin@city.test", "test.step", f"t{i}", n=i, note="说明")
        finally:
            await mb.close()
    asyncio.run(go())


def _verify(cfg_path) -> tuple[int, str]:
    p = run(cfg_path, "audit", "verify", ok=False)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.slow
def test_verify_names_each_edited_deleted_reordered_and_truncated_entry(cfg, storage_url):
    ready_with_user(cfg)
    _entries(cfg, 10)
    code, out = _verify(cfg)
    assert code == 0 and "audit log intact" in out, out
    run(cfg, "audit", "anchor")
    async def head() -> int:
        db = open_database(storage_url)
        try:
            async with db.read() as conn:
                return (await auditlog.head(conn))[0]
        finally:
            await db.dispose()
    last = asyncio.run(head())
    assert last >= 10

    # Edited: the detail of entry 4 rewritten in place.
    _sql(storage_url, "UPDATE audit_log SET detail = '{}' WHERE seq = 4")
    code, out = _verify(cfg)
    assert code == 1 and "audit entry 4: its content does not match its hash (edited)" in out, out
    _sql(storage_url, "UPDATE audit_log SET detail = '{\"n\": 3, \"note\": \"说明\"}' WHERE seq = 4")
    assert _verify(cfg)[0] == 0

    # Reordered: entries 5 and 6 swap their contents (and hashes): the links break at 5.
    _sql(storage_url,
         "UPDATE audit_log SET seq = -5 WHERE seq = 5", "UPDATE audit_log SET seq = 5 WHERE seq = 6",
         "UPDATE audit_log SET seq = 6 WHERE seq = -5")
    code, out = _verify(cfg)
    assert code == 1 and "audit entry 5:" in out, out
    _sql(storage_url,
         "UPDATE audit_log SET seq = -5 WHERE seq = 5", "UPDATE audit_log SET seq = 5 WHERE seq = 6",
         "UPDATE audit_log SET seq = 6 WHERE seq = -5")
    assert _verify(cfg)[0] == 0

    # Deleted: entry 7 removed.
    _sql(storage_url, "DELETE FROM audit_log WHERE seq = 7")
    code, out = _verify(cfg)
    assert code == 1 and "audit entry 7: missing (deleted)" in out, out

    # Truncated end: the last three entries removed (7 is already gone: only the anchor can tell now).
    _sql(storage_url, "DELETE FROM audit_log WHERE seq >= 7")
    code, out = _verify(cfg)
    assert code == 1 and f"audit entry 7: missing: anchor names entry {last} but the log ends at 6 (truncated)" \
        in out, out


def test_a_rewritten_tail_is_caught_by_the_anchor(cfg, storage_url):
    """Someone who deletes the end and appends a fresh, self-consistent tail still differs from the anchor."""
    ready_with_user(cfg)
    _entries(cfg, 5)
    run(cfg, "audit", "anchor")
    _sql(storage_url, "DELETE FROM audit_log WHERE seq >= 3")
    _entries(cfg, 3)  # the chain is valid again up to the same or a higher sequence number
    code, out = _verify(cfg)
    assert code == 1 and "differs from its anchor (rewritten)" in out, out


def test_search_and_csv_export(cfg):
    ready_with_user(cfg)
    _entries(cfg, 3)
    out = run(cfg, "audit", "search", "--action", "test.step", "--target", "t1").stdout
    assert out.count("\n") == 1 and "\ttest.step\tt1\t" in out
    csv_out = run(cfg, "audit", "export", "--csv", "--actor", "admin@city.test").stdout.splitlines()
    assert csv_out[0] == "seq,at,actor,action,target,detail,hash" and len(csv_out) == 4
    assert csv_out[1].split(",")[4] == "t0"
    out = run(cfg, "audit", "search", "--text", '"N": 2').stdout  # a case-insensitive substring of the detail
    assert out.count("\n") == 1 and "\tt2\t" in out
    csv_out = run(cfg, "audit", "export", "--csv", "--text", "说明", "--target", "t1").stdout.splitlines()
    assert len(csv_out) == 2 and csv_out[1].split(",")[4] == "t1"


async def test_appends_from_two_stores_keep_one_chain(storage_url):
    """Two stores on one database (two nodes) appending at once still make one unbroken chain."""
    m1 = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    m2 = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await asyncio.gather(*(m.directory.audit("x", "race", str(i)) for i in range(20) for m in (m1, m2)))
        async with m1.router.central.read() as conn:
            count, problem = await auditlog.verify(conn, [])
        assert problem is None and count == 40
    finally:
        await m1.close()
        await m2.close()


async def test_the_consoles_batched_verification_finds_what_the_clis_finds(storage_url):
    """verify_off_loop (short transactions, hashing in a thread) over several batches, intact then edited."""
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        now = datetime.now(timezone.utc)
        async with mb.router.central.write() as conn:
            seq = await auditlog.append_many(conn, [(now, "a", "b", str(i), "{}")
                                                    for i in range(auditlog.VERIFY_BATCH * 2 + 5)])
        assert await auditlog.verify_off_loop(mb.router.central, [(seq, (await _head(mb))[1])], pause=0) == (seq, None)
        async with mb.router.central.write() as conn:
            await conn.execute(text(f"UPDATE audit_log SET target = 'x' WHERE seq = {auditlog.VERIFY_BATCH + 3}"))
        count, problem = await auditlog.verify_off_loop(mb.router.central, [], pause=0)
        assert (count, problem.seq) == (auditlog.VERIFY_BATCH + 2, auditlog.VERIFY_BATCH + 3)
        assert "edited" in problem.reason
    finally:
        await mb.close()


async def _head(mb) -> tuple[int, str]:
    async with mb.router.central.read() as conn:
        return await auditlog.head(conn)


async def test_the_server_anchors_the_head_when_it_changed(storage_url, tmp_path):
    from types import SimpleNamespace

    from mailserver.auditanchor import AuditAnchor
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    path = tmp_path / "anchors" / "audit-anchors.txt"
    svc = AuditAnchor(SimpleNamespace(mailboxes=mb, config=SimpleNamespace(audit_anchor_path=path)), 3600)
    try:
        for i in range(3):
            await mb.directory.audit_soon("x", "login.ok", "imap", n=i)
        await svc.anchor_now()
        await svc.anchor_now()  # nothing new: no second line
        async with mb.router.central.read() as conn:
            head = await auditlog.head(conn)
        assert auditlog.read_anchors(path) == [head] and head[0] >= 3
        await mb.directory.audit("admin", "user.add", "y@city.test")
        svc.start()
        await svc.close()  # anchors what this run wrote last
        anchors = auditlog.read_anchors(path)
        assert len(anchors) == 2 and anchors[-1][0] == head[0] + 1
        async with mb.router.central.read() as conn:
            assert (await auditlog.verify(conn, anchors))[1] is None
    finally:
        await mb.close()


def test_the_migration_chains_the_entries_written_before_it(tmp_path):
    """dir0016 numbers and hashes the rows an older server wrote, in id order: verify finds them intact."""
    from alembic import command
    from sqlalchemy import create_engine

    from mailboxes import migrations
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrations.alembic_config("directory", conn), "dir0013")
        for i in range(3):
            conn.exec_driver_sql("INSERT INTO audit_log (at, actor, action, target, detail) VALUES "
                                 f"('2026-12-0{i + 1} 08:00:00.000000', 'cli:root', 'user.add', 'u{i}', '{{}}')")
        command.upgrade(migrations.alembic_config("directory", conn), "head")
    engine.dispose()

    async def check() -> tuple[int, object]:
        db = open_database(url)
        try:
            async with db.read() as conn:
                return await auditlog.verify(conn, [])
        finally:
            await db.dispose()
    assert asyncio.run(check()) == (3, None)
