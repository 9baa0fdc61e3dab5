"""Removing what deleted mail leaves behind: unreferenced blobs, their search rows and files, and usage drift.

A blob is shared by every message row with the same content (design.md,
seam 7), so it may go only when no row refers to it, and never while another
transaction is adding a reference. The protocol:

- A writer that adds a reference to an existing blob holds its row with
  FOR KEY SHARE (blobs.put_many, Store._copy_same); the foreign key from
  messages takes the same lock on INSERT.
- `collect`, inside the transaction that removed the references, locks the
  candidate rows FOR UPDATE SKIP LOCKED and deletes those that no message
  refers to in a statement that starts after the lock (PostgreSQL READ
  COMMITTED takes a fresh snapshot per statement, so every reference
  committed before the lock is seen, and none can be added after it). It
  never waits for a lock, so it cannot deadlock with a delivery. A row it
  skipped is in use by another transaction right now; `finish` retries it
  after the commit, one row at a time, waiting for the lock.
  On SQLite there is one writer at a time, so the check is exact as it is.
- Files of the blob directory go only after the row's deletion committed,
  under `blobs.lock_files` (the lock a writer of a new file takes), and only
  if no row with that hash exists by then. A crash between the commit and
  the unlink leaves a file without a row, which `sweep` removes the same safe
  way.
- Search rows go with their blob: SQLite's FTS5 tables (blob_fts, blob_text)
  explicitly, PostgreSQL's blob_search and blob_text by ON DELETE CASCADE.
- Blob ids are never reused (caches key on them): AUTOINCREMENT on SQLite.
- A session may still show a message another session expunged; its removed
  body reads as an empty message (Store.parsed, RFC 2180 §4.1.3).

Mailbox usage (per account, in the home partition) moves by the size of each
message row added or removed, in the same transaction; `recount_usage` sets it
from the rows themselves, locking the usage row first so that concurrent
writers' relative updates still add up.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import and_, exists, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema as t
from . import substring
from .blobs import BlobDirectory, lock_files
from .db import Database
from .ingest import prepare

if TYPE_CHECKING:
    from .store import Store

CHUNK = 500  # ids per statement


@dataclass
class Released:
    """What `collect` did inside a transaction, for `finish` to complete after the commit."""

    files: list[bytes] = field(default_factory=list)  # hashes of deleted rows kept in the blob directory
    skipped: list[int] = field(default_factory=list)  # candidates locked by another transaction
    deleted: int = 0

    def extend(self, other: Released) -> None:
        self.files += other.files
        self.skipped += other.skipped
        self.deleted += other.deleted


@functools.cache
def empty_parse() -> str:
    """The stored parse of an empty message: what a blob removed under a reader reads as."""
    return prepare(b"").parsed_json


def _delete_rows(conn: Connection, ids: list[int]) -> int:
    """Delete blob rows (and their search rows); returns how many contents were removed.

    Caches key on (partition, blob id) and take ids never to be reused: PostgreSQL's
    sequence never goes back, and the blobs table is AUTOINCREMENT on SQLite (mai0002).
    """
    if conn.dialect.name == "sqlite":  # FTS5 has no foreign key; PostgreSQL's search tables cascade
        listed = ",".join(map(str, ids))
        for table in ("blob_fts", substring.TABLE):  # the word index and the substring index
            conn.execute(text(f"DELETE FROM {table} WHERE rowid IN ({listed})"))
    conn.execute(t.blobs.delete().where(t.blobs.c.id.in_(ids)))
    return len(ids)


def _unreferenced():
    return ~exists().where(t.messages.c.blob_id == t.blobs.c.id)


async def collect(conn: AsyncConnection, blob_ids, *, wait: bool = False) -> Released:
    """Delete the blobs among `blob_ids` that no message refers to (call inside the writing transaction)."""
    return await conn.run_sync(collect_sync, blob_ids, wait=wait)


def collect_sync(conn: Connection, blob_ids, *, wait: bool = False) -> Released:
    """`collect` on a synchronous connection (a Database.write_sync function)."""
    out = Released()
    ids = sorted(set(blob_ids))
    pg = conn.dialect.name == "postgresql"
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        if pg:
            q = select(t.blobs.c.id).where(t.blobs.c.id.in_(chunk)).order_by(t.blobs.c.id)
            q = q.with_for_update() if wait else q.with_for_update(skip_locked=True)
            locked = set(conn.execute(q).scalars().all())
            out.skipped += [b for b in chunk if b not in locked]
            chunk = sorted(locked)
            if not chunk:
                continue
        rows = conn.execute(select(t.blobs.c.id, t.blobs.c.sha256, t.blobs.c.data.is_(None).label("in_dir"))
                            .where(and_(t.blobs.c.id.in_(chunk), _unreferenced()))).all()
        if not rows:
            continue
        out.deleted += _delete_rows(conn, [r.id for r in rows])
        out.files += [bytes(r.sha256) for r in rows if r.in_dir]
    return out


async def finish(db: Database, files: BlobDirectory | None, released: Released) -> Released:
    """After the commit: retry the blobs `collect` skipped, then remove the files of deleted rows."""
    skipped, released.skipped = released.skipped, []
    for blob_id in skipped:  # rare: one lock at a time, so never part of a deadlock
        async with db.write() as conn:
            more = await collect(conn, [blob_id], wait=True)
        released.deleted += more.deleted  # (a row that vanished meanwhile was someone else's to remove)
        released.files += more.files
    if files is not None and released.files:
        await remove_files(db, files, released.files)
    return released


async def remove_files(db: Database, files: BlobDirectory, shas: list[bytes]) -> int:
    """Remove the files of these hashes that no blob row (committed or being written) refers to."""
    removed = 0
    shas = list(dict.fromkeys(shas))
    for i in range(0, len(shas), CHUNK):
        chunk = shas[i:i + CHUNK]
        async with db.write() as conn:
            await lock_files(conn, chunk)
            alive = {bytes(s) for s in (await conn.execute(
                select(t.blobs.c.sha256).where(t.blobs.c.sha256.in_(chunk)))).scalars().all()}
            removed += await files.unlink([s for s in chunk if s not in alive])
    return removed


async def recount_usage(conn: AsyncConnection, account_id: int) -> tuple[int, int]:
    """Set an account's usage in this (home) partition to what its message rows add up to."""
    uc = t.mailbox_usage.c
    q = select(uc.account_id).where(uc.account_id == account_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()  # first: relative updates by others then wait, and add up after us
    if (await conn.execute(q)).first() is None:
        return 0, 0  # not this account's home partition
    n, size = (await conn.execute(
        select(func.count(), func.coalesce(func.sum(t.messages.c.size), 0))
        .select_from(t.messages.join(t.folders, t.folders.c.id == t.messages.c.folder_id))
        .where(t.folders.c.account_id == account_id))).first()
    await conn.execute(t.mailbox_usage.update().where(uc.account_id == account_id)
                       .values(bytes=int(size), messages=int(n)))
    return int(size), int(n)


@dataclass(frozen=True)
class SweepReport:
    blobs: int  # unreferenced blob rows removed (with their search rows)
    search_rows: int  # search rows without a blob removed (SQLite)
    files: int  # files without a row removed
    usage_fixed: int  # accounts whose stored usage differed from the recount


async def sweep(db: Database, files: BlobDirectory | None, account_ids: list[int]) -> SweepReport:
    """Remove every leftover of one partition (older versions, crashes) and recount its accounts' usage.

    Safe while the server runs: it takes the same locks as `collect`, and skips
    rows that are in use this instant (they are looked at by the next sweep).
    """
    async with db.read() as conn:
        orphans = list((await conn.execute(select(t.blobs.c.id).where(_unreferenced())
                                           .order_by(t.blobs.c.id))).scalars().all())
    released = Released()
    for i in range(0, len(orphans), CHUNK):
        async with db.write() as conn:
            released.extend(await collect(conn, orphans[i:i + CHUNK]))
    released.skipped = []  # in use right now; not ours to wait for
    await finish(db, files, released)
    search_rows = 0
    if db.dialect == "sqlite":
        async with db.write() as conn:
            for table in ("blob_fts", substring.TABLE):
                res = await conn.execute(text(f"DELETE FROM {table} WHERE rowid NOT IN (SELECT id FROM blobs)"))
                search_rows += max(res.rowcount or 0, 0)
                # Merge the index segments, so deleted rows' terms leave the index too.
                await conn.execute(text(f"INSERT INTO {table}({table}) VALUES ('optimize')"))
    n_files = 0
    if files is not None:
        stored = list(files.stored())
        n_files = await remove_files(db, files, stored)
    fixed = 0
    for acct in account_ids:
        async with db.write() as conn:
            before = (await conn.execute(select(t.mailbox_usage.c.bytes, t.mailbox_usage.c.messages)
                                         .where(t.mailbox_usage.c.account_id == acct))).first()
            after = await recount_usage(conn, acct)
        if before is not None and (int(before.bytes), int(before.messages)) != after:
            fixed += 1
    return SweepReport(released.deleted, search_rows, n_files, fixed)


async def sweep_all(store: Store) -> dict[str, SweepReport]:
    """`sweep` every partition this installation has (main, departments, year archives)."""
    router = store.router
    names = await router.known()
    accounts = await store.directory.list_accounts()
    out = {}
    for name in sorted(names):
        db = await router.database(name)
        out[name] = await sweep(db, store.files(name), [a.id for a in accounts if store.home(a) == name])
    return out
