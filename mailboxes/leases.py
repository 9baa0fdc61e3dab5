"""Named leases in the central database: one holder at a time for a job that must run on one node only.

Implementation notes
- A lease is a row (name, holder, expires_at). `acquire` takes it when it is free, expired or
  already ours, in one conditional UPDATE (or the INSERT of a first row, ignoring a concurrent
  one): whichever node's statement commits first holds it; the others see rowcount 0. No
  advisory locks and no SKIP LOCKED, so SQLite and PostgreSQL behave alike.
- The holder renews by acquiring again before `ttl` runs out (every round of its loop); a
  holder that dies loses the lease when it expires and another node takes over. `release`
  on a clean stop hands it over at once.
- The holder id must be unique per process: delivery.queue.node_id() is (host, pid, random).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import schema as t
from .db import Database
from .websessions import _aware, utcnow

_INSERTS = {"postgresql": pg_insert, "sqlite": sqlite_insert}


class Leases:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew `name` for `ttl` seconds; False while another holder's lease runs."""
        now = self.clock()
        until = now + timedelta(seconds=ttl)
        c = t.leases.c
        async with self.db.write() as conn:
            res = await conn.execute(update(t.leases).where(and_(
                c.name == name, or_(c.holder == holder, c.expires_at <= now))).values(holder=holder, expires_at=until))
            if res.rowcount == 1:
                return True
            res = await conn.execute(_INSERTS[self.db.dialect](t.leases).values(
                name=name, holder=holder, expires_at=until).on_conflict_do_nothing(index_elements=[c.name]))
            return res.rowcount == 1

    async def release(self, name: str, holder: str) -> None:
        """Give `name` up now, if we hold it."""
        c = t.leases.c
        async with self.db.write() as conn:
            await conn.execute(delete(t.leases).where(and_(c.name == name, c.holder == holder)))

    async def holder(self, name: str) -> tuple[str, datetime] | None:
        """Who holds `name` and until when, or None when nobody does (free or expired)."""
        c = t.leases.c
        async with self.db.read() as conn:
            row = (await conn.execute(select(c.holder, c.expires_at).where(c.name == name))).first()
        if row is None or _aware(row.expires_at) <= self.clock():
            return None
        return row.holder, _aware(row.expires_at)
