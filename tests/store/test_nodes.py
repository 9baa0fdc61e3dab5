"""Several nodes on one PostgreSQL: a change committed on one reaches the others' buses (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from mailboxes.ingest import prepare
from mailboxes.model import Flag
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER, _create_pg_database
from tests.store.test_store import make_message

pytestmark = pytest.mark.pg


async def test_events_cross_nodes_after_commit(pg):
    name = "t_" + uuid.uuid4().hex[:12]
    await asyncio.to_thread(_create_pg_database, pg, name)
    cfg = StorageConfig(url=pg.url(name))
    node_a = await open_mailboxes(cfg, hasher=FAST_HASHER)
    node_b = await open_mailboxes(cfg, hasher=FAST_HASHER)
    try:
        await node_a.directory.add_domain("city.test")
        acct = await node_a.add_account("a@city.test", password="pw")
        inbox = await node_b.store.folder(acct, "INBOX")
        await asyncio.wait_for(node_b.store._relays["main"].ready.wait(), 10)
        on_b = node_b.store.bus.listen(inbox.ref)
        on_a = node_a.store.bus.listen(inbox.ref)
        r = await node_a.store.append(acct, "INBOX", prepare(make_message("cross-node")))
        ev = await asyncio.wait_for(on_b.get(), 5)
        assert (ev.kind, ev.folder) == ("append", inbox.ref)
        # When B hears of it, B can already read it (sent at commit).
        assert [m.uid for m in await node_b.store.messages(inbox.ref)] == [r.uid]
        # Node A hears its own event once, from its in-process bus, not twice.
        assert (await asyncio.wait_for(on_a.get(), 5)).kind == "append"
        await node_b.store.store_flags(inbox.ref, [r.uid], "add", int(Flag.SEEN))
        ev = await asyncio.wait_for(on_a.get(), 5)
        assert ev.kind == "flags"
        assert on_a.queue.empty()
    finally:
        await node_a.close()
        await node_b.close()
