"""A district's durable record of the messages it fetched from its upstream's pull mailbox.

Implementation notes
- A row per message delivered here, written after the local delivery committed and
  before the upstream is asked to expunge it (bridges.pull): a message seen again because
  the EXPUNGE never reached the upstream is recognised by (upstream, UIDVALIDITY, UID), or by
  its digest (the envelope's MAC) when the upstream's UIDVALIDITY changed and the UIDs with it.
- Rows older than KEEP_DAYS are removed (`prune`): by then the upstream has long expunged them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError

from . import schema as t
from .db import Database
from .directory import utcnow

KEEP_DAYS = 90


class PullRecords:
    def __init__(self, db: Database, upstream: str, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.upstream = upstream
        self.clock = clock

    async def seen(self, uidvalidity: int, uid: int, digest: str) -> bool:
        c = t.pull_fetched.c
        q = select(c.id).where(c.upstream == self.upstream, or_(
            and_(c.uidvalidity == uidvalidity, c.uid == uid), c.digest == digest)).limit(1)
        async with self.db.read() as conn:
            return (await conn.execute(q)).first() is not None

    async def record(self, uidvalidity: int, uid: int, digest: str) -> None:
        """Note a message delivered here (idempotent)."""
        try:
            async with self.db.write() as conn:
                await conn.execute(insert(t.pull_fetched).values(
                    upstream=self.upstream, uidvalidity=uidvalidity, uid=uid, digest=digest, fetched_at=self.clock()))
        except IntegrityError:
            pass  # recorded already

    async def prune(self) -> int:
        c = t.pull_fetched.c
        async with self.db.write() as conn:
            res = await conn.execute(delete(t.pull_fetched).where(
                c.upstream == self.upstream, c.fetched_at < self.clock() - timedelta(days=KEEP_DAYS)))
        return res.rowcount or 0
