"""Folder identity: UIDVALIDITY values that only go up, and the test that a FolderRef still names the folder it was made for.

Implementation notes (invariants)
- Folder ids are never reused (schema.NEVER_REUSED), so (partition, id) names one folder
  for ever; a FolderRef also carries the folder's UIDVALIDITY (its generation: a RENAME
  gives a new one) and its owner, and the store refuses a ref whose folder row no longer
  matches them, so a stale ref can never act on a folder that took over its place.
- RFC 3501 §2.3.1.1: a mailbox re-created under a name, or a name taken over by a RENAME,
  gets a UIDVALIDITY greater than any before. The time in seconds is not enough (DELETE and
  CREATE within a second); the last value handed out is kept in ``mail_counters`` and moved
  with one UPDATE inside the creating transaction, which serialises concurrent creators
  (the SQLite writer lock, the PostgreSQL row lock) across processes and nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import and_, case, func, insert, select, update

from . import schema as t
from .errors import NotFound
from .model import FolderRef

UIDVALIDITY = "uidvalidity"  # the mail_counters row
MAX_UIDVALIDITY = 0xFFFFFFFF  # RFC 3501 §9: nz-number, a 32-bit value


def _now() -> int:
    return int(time.time())


async def next_uidvalidity(conn, count: int = 1, *, clock: Callable[[], int] = _now) -> int:
    """The first of ``count`` new UIDVALIDITY values (consecutive), above every value handed out before.

    Time-based while the clock is ahead of the counter (values stay meaningful across a
    restored backup), otherwise the previous value plus one.
    """
    return await conn.run_sync(next_uidvalidity_sync, count, clock=clock)


def next_uidvalidity_sync(conn, count: int = 1, *, clock: Callable[[], int] = _now) -> int:
    """`next_uidvalidity` on a synchronous connection (a Database.write_sync function)."""
    now = max(1, clock())
    c = t.mail_counters.c
    top = conn.execute(update(t.mail_counters).where(c.name == UIDVALIDITY).values(
        value=case((c.value + count > now + count - 1, c.value + count), else_=now + count - 1))
        .returning(c.value)).scalar()
    if top is None:  # a database created without the migrations' seed row
        seen = conn.execute(select(func.max(t.folders.c.uidvalidity))).scalar() or 0
        top = max(now + count - 1, int(seen) + count)
        conn.execute(insert(t.mail_counters).values(name=UIDVALIDITY, value=top))
    if top > MAX_UIDVALIDITY:
        raise OverflowError("UIDVALIDITY would exceed 32 bits")
    return int(top) - count + 1


def names_folder(ref: FolderRef):
    """A WHERE clause on ``folders``: the row ``ref`` was made for (same id, generation and owner)."""
    c = t.folders.c
    conds = [c.id == ref.id]
    if ref.generation:
        conds.append(c.uidvalidity == ref.generation)
    if ref.owner:
        conds.append(c.account_id == ref.owner)
    return and_(*conds)


def check(ref: FolderRef, row) -> None:
    """Raise NotFound unless the folders ``row`` (or None) is the folder ``ref`` was made for."""
    if (row is None or (ref.generation and row.uidvalidity != ref.generation)
            or (ref.owner and row.account_id != ref.owner)):
        raise NotFound("folder no longer exists")
