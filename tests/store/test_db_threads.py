"""SQLite's one-hop transactions (Database.read_sync, write_sync): each connection used in its own thread, statements compiled once per pool."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import select

from mailboxes import schema as t
from mailboxes.db import open_database
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER

READERS = 4


async def test_concurrent_reads_each_use_their_own_connection_and_share_one_compiled_statement(tmp_path):
    url = f"sqlite:///{tmp_path}/postroom.db"
    mb = await open_mailboxes(StorageConfig(url=url), hasher=FAST_HASHER)
    await mb.close()
    db = open_database(url)
    try:
        stmt = select(t.folders.c.id).where(t.folders.c.id == -1)
        inside = threading.Barrier(READERS, timeout=30)  # all READERS transactions open at once: READERS connections

        def read(conn):
            raw = conn.connection.driver_connection
            inside.wait()
            return threading.get_ident(), id(raw), conn.execute(stmt).all()

        seen = await asyncio.gather(*(db.read_sync(read) for _ in range(READERS)))
        assert [rows for _, _, rows in seen] == [[]] * READERS
        assert len({thread for thread, _, _ in seen}) == READERS  # each in the thread of its connection
        assert len({raw for _, raw, _ in seen}) == READERS  # and on that connection, not a shared one
        (engine,) = [b.engine for immediate, b in db._bound.items() if not immediate]
        compiled = [k for k in engine._compiled_cache if "folders" in str(k[1])] if engine._compiled_cache else []
        assert len(compiled) == 1  # compiled once for the four connections (an engine each compiled it four times)
        # The same connections serve the next reads, each still its own thread's.
        again = await asyncio.gather(*(db.read_sync(read) for _ in range(READERS)))
        assert {(th, raw) for th, raw, _ in again} == {(th, raw) for th, raw, _ in seen}
    finally:
        await db.dispose()


async def test_opening_makes_the_engines_before_the_first_client(tmp_path):
    mb = await open_mailboxes(StorageConfig(url=f"sqlite:///{tmp_path}/postroom.db"), hasher=FAST_HASHER)
    try:
        assert set(mb.router.central._bound) == {True, False}  # writer's and readers' engines, set up
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("a@city.test", password="pw")
        folder = await mb.store.folder(acct, "INBOX")
        assert await mb.store.claim_recent(folder.ref, 0) == 0  # the warmed writer still writes
    finally:
        await mb.close()
