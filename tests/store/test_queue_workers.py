"""Queue claims from several workers at once (serve --workers): every due recipient row is claimed by exactly one.

Each claimer has its own engine on the database, as each worker process has:
on SQLite a claim is one BEGIN IMMEDIATE transaction, and SQLite's write lock
excludes other connections alike whether they are in this process or another;
on PostgreSQL the rows are taken FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from delivery.queue import NewEntry, Queue, node_id
from mailboxes.db import open_database
from mailboxes.partitions import create_central_schema

MESSAGES = 60
RECIPIENTS = 5  # per message
CLAIMERS = 4
BATCH = 7


async def test_concurrent_claimers_take_each_row_once(storage_url):
    dbs = [open_database(storage_url) for _ in range(CLAIMERS)]
    await create_central_schema(dbs[0])
    queues = [Queue(db, node=node_id("mail.city.test")) for db in dbs]
    try:
        await asyncio.gather(*(queues[i % CLAIMERS].enqueue(NewEntry(
            f"Q{i}", "a@city.test", tuple(f"r{k}@far{i}.example" for k in range(RECIPIENTS)),
            b"Subject: x\r\n\r\nbody\r\n")) for i in range(MESSAGES)))
        taken: Counter = Counter()

        async def claimer(q: Queue) -> None:
            while batch := await q.claim(BATCH):
                taken.update(c.recipient_id for c in batch)

        await asyncio.gather(*(claimer(q) for q in queues))
        assert len(taken) == MESSAGES * RECIPIENTS
        assert set(taken.values()) == {1}, "a row was claimed twice"
    finally:
        for q in queues:
            await q.close()
        for db in dbs:
            await db.dispose()
