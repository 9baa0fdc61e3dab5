"""Content-addressed message blobs (SHA-256): one copy per partition however many recipients."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema as t
from . import indexer
from .db import Blocking, Database, run_off_loop
from .errors import NotFound


@dataclass(frozen=True)
class PreparedMessage:
    """A message parsed once on entry, ready to be written: bytes, hash and stored metadata."""

    raw: bytes
    sha256: bytes
    parsed_json: str
    sent_at: datetime | None
    subject: str
    addrs: str
    body_text: str
    head_text: str = ""  # every header field, decoded (the substring index, substring.py)

    @property
    def size(self) -> int:
        return len(self.raw)


class BlobDirectory:
    """Blobs as files under `root/ab/cd/<sha>`; written and fsynced before the row commits.

    The store uses one view per partition (`for_partition`: `root/<partition>/ab/cd/<sha>`),
    so a file belongs to exactly one database, and that database's locks decide when it
    may be removed (see cleanup.py). Files written by older versions straight under
    `root/ab/cd/` are still read (`legacy`), never written or removed.
    """

    def __init__(self, root: str | os.PathLike, *, legacy: str | os.PathLike | None = None) -> None:
        self.root = Path(root)
        self.legacy = Path(legacy) if legacy is not None else None

    def for_partition(self, name: str) -> BlobDirectory:
        return BlobDirectory(self.root / name, legacy=self.root)

    def path(self, sha: bytes) -> Path:
        h = sha.hex()
        return self.root / h[:2] / h[2:4] / h

    def _legacy_path(self, sha: bytes) -> Path | None:
        if self.legacy is None:
            return None
        h = sha.hex()
        return self.legacy / h[:2] / h[2:4] / h

    def write_file(self, sha: bytes, raw: bytes) -> None:
        """Write and fsync the file (blocking: call it off the event loop)."""
        p = self.path(sha)
        if p.exists() and p.stat().st_size == len(raw):
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    async def write(self, sha: bytes, raw: bytes) -> None:
        await asyncio.to_thread(self.write_file, sha, raw)

    def _open(self, sha: bytes):  # noqa: ANN202 - a binary file
        """The blob's file, here or where older versions wrote it (FileNotFoundError if neither)."""
        try:
            return open(self.path(sha), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            old = self._legacy_path(sha)
            if old is None:
                raise
            return open(old, "rb")  # noqa: SIM115

    def _read(self, sha: bytes) -> bytes:
        with self._open(sha) as f:
            return f.read()

    async def read(self, sha: bytes) -> bytes:
        try:
            return await asyncio.to_thread(self._read, sha)
        except FileNotFoundError:
            raise NotFound(f"blob {sha.hex()} is missing from the blob directory") from None

    def _read_range(self, sha: bytes, start: int, end: int) -> bytes:
        with self._open(sha) as f:
            f.seek(start)
            return f.read(end - start)

    async def read_range(self, sha: bytes, start: int, end: int) -> bytes:
        """Bytes [start, end) of the blob's file: a part of a large message without the rest."""
        try:
            return await asyncio.to_thread(self._read_range, sha, start, end)
        except FileNotFoundError:
            raise NotFound(f"blob {sha.hex()} is missing from the blob directory") from None

    def _unlink(self, sha: bytes) -> bool:
        """Remove the file (and a crashed writer's temporary) of `sha`; True if there was one."""
        p = self.path(sha)
        found = False
        for q in (p, p.with_suffix(".tmp")):
            try:
                q.unlink()
                found = True
            except FileNotFoundError:
                pass
        return found

    async def unlink(self, shas: list[bytes]) -> int:
        """Remove these blobs' files; the caller holds the locks that make it safe (cleanup.py)."""
        return sum(await asyncio.to_thread(lambda: [self._unlink(s) for s in shas]))

    def stored(self) -> Iterator[bytes]:
        """The hash of every file (or leftover temporary) under this view's root."""
        if not self.root.is_dir():
            return
        for p in self.root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*"):
            name = p.name[:-4] if p.name.endswith(".tmp") else p.name
            if len(name) == 64:
                try:
                    yield bytes.fromhex(name)
                except ValueError:
                    continue


PUT_ROUNDS = 8  # insert-or-look-up rounds against cleanup removing the same rows meanwhile (PostgreSQL)

# PostgreSQL advisory-lock namespace of blob files ("blob"): a lock per hash, taken by
# whoever creates or removes the file of that hash in this database.
FILE_LOCK_SPACE = 0x626C6F62


def _lock_files_sql(shas: list[bytes]):
    keys = sorted({int.from_bytes(s[:4], "big", signed=True) for s in shas})
    return (text("SELECT pg_advisory_xact_lock(:space, k) FROM"
                 " (SELECT unnest(CAST(:keys AS integer[])) AS k ORDER BY 1) AS ks"),
            {"space": FILE_LOCK_SPACE, "keys": keys})


async def lock_files(conn: AsyncConnection, shas: list[bytes]) -> None:
    """Hold (until the transaction ends) the right to create or remove these hashes' files.

    On SQLite the write transaction already excludes every other writer. On
    PostgreSQL a transaction-scoped advisory lock per hash, taken in key order so
    two holders cannot deadlock; different hashes may share a key (they then
    only wait for each other).
    """
    if conn.dialect.name == "postgresql" and shas:
        await conn.execute(*_lock_files_sql(shas))


def lock_files_sync(conn: Connection, shas: list[bytes]) -> None:
    """`lock_files` on a synchronous connection (a Database.write_sync function)."""
    if conn.dialect.name == "postgresql" and shas:
        conn.execute(*_lock_files_sql(shas))


def sha256(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


async def put_many(conn: AsyncConnection, items: list[PreparedMessage],
                   blob_dir: BlobDirectory | None) -> list[int]:
    """Store each message's blob (once per distinct hash) in this transaction; return blob ids."""
    return await conn.run_sync(put_many_sync, items, blob_dir, run_off_loop)


_INSERT_OR_IGNORE = {  # built once: building and keying it per batch cost more than running it
    "postgresql": pg_insert(t.blobs).on_conflict_do_nothing(index_elements=[t.blobs.c.sha256])
    .returning(t.blobs.c.sha256, t.blobs.c.id),
    "sqlite": sqlite_insert(t.blobs).on_conflict_do_nothing(index_elements=[t.blobs.c.sha256])
    .returning(t.blobs.c.sha256, t.blobs.c.id),
}


# A new body and its pending-index row in one statement (PostgreSQL): two round trips become one.
_PUT_ONE_PG = text(
    "WITH b AS (INSERT INTO blobs (sha256, size, data, parsed, sent_at)"
    " VALUES (:sha256, :size, :data, :parsed, :sent_at) ON CONFLICT (sha256) DO NOTHING RETURNING id),"
    + indexer.PENDING_CTE_PG + " SELECT id FROM b")


def one_blob_params(p: PreparedMessage) -> dict:
    """The parameters of one new body and its pending-index row (_PUT_ONE_PG, deliverywrite._ONE_PG)."""
    return {"sha256": p.sha256, "size": p.size, "data": p.raw, "parsed": p.parsed_json, "sent_at": p.sent_at,
            **indexer.pending_params(None, p.subject, p.addrs, p.head_text, p.body_text)}


def _put_one_pg(conn: Connection, p: PreparedMessage) -> int | None:
    """Insert one new body with its pending-index row; None if the hash is stored already."""
    return conn.execute(_PUT_ONE_PG, one_blob_params(p)).scalar()


def put_many_sync(conn: Connection, items: list[PreparedMessage], blob_dir: BlobDirectory | None,
                  blocking: Blocking) -> list[int]:
    """`put_many` on a synchronous connection; blob files are written through ``blocking``.

    A new body (the usual case) costs one statement: INSERT ... ON CONFLICT DO NOTHING
    RETURNING. Hashes stored already are then looked up, on PostgreSQL FOR KEY SHARE: a
    reference is about to be added, so the row is held against cleanup.collect, which
    deletes only rows it can lock FOR UPDATE. A row it removed between the two
    statements is missing from the look-up, and is inserted anew in the next round.
    """
    pg = conn.dialect.name == "postgresql"
    if pg and blob_dir is None and len(items) == 1:  # a lone session's message: one round trip if new
        blob_id = _put_one_pg(conn, items[0])
        if blob_id is not None:
            return [blob_id]
    first: dict[bytes, PreparedMessage] = {}
    for p in items:
        first.setdefault(p.sha256, p)
    ids: dict[bytes, int] = {}
    new: dict[bytes, PreparedMessage] = {}
    todo = sorted(first)  # one order for every writer: two inserting the same hashes wait, never deadlock
    if not todo:
        return []
    add = _INSERT_OR_IGNORE["postgresql" if pg else "sqlite"]
    for _ in range(PUT_ROUNDS):
        for r in conn.execute(add, [{"sha256": s, "size": first[s].size, "data": None if blob_dir else first[s].raw,
                                     "parsed": first[s].parsed_json, "sent_at": first[s].sent_at} for s in todo]):
            ids[bytes(r.sha256)] = r.id
            new[bytes(r.sha256)] = first[bytes(r.sha256)]
        todo = [s for s in todo if s not in ids]
        for i in range(0, len(todo), 500):
            q = select(t.blobs.c.sha256, t.blobs.c.id).where(t.blobs.c.sha256.in_(todo[i:i + 500]))
            if pg:
                q = q.order_by(t.blobs.c.id).with_for_update(read=True, key_share=True)
            ids.update({bytes(r.sha256): r.id for r in conn.execute(q)})
        todo = [s for s in todo if s not in ids]
        if not todo:
            break
    else:
        raise RuntimeError(f"blob rows kept vanishing while being referenced ({len(todo)} left)")
    if new:
        if blob_dir is not None:
            lock_files_sync(conn, list(new))  # against a concurrent removal of the same file
            for p in new.values():
                blocking(blob_dir.write_file, p.sha256, p.raw)
        # The search indexes take them later, out of the delivery's path (indexer.py).
        indexer.add_pending(conn, [indexer.pending_params(ids[s], p.subject, p.addrs, p.head_text, p.body_text)
                                   for s, p in new.items()])
    return [ids[p.sha256] for p in items]


def _sqlite_range(conn: Connection, blob_id: int, start: int, end: int) -> bytes | tuple[bytes]:
    """Bytes [start, end) of a body kept in SQLite, read by incremental blob I/O; (sha256,) if kept as a file.

    substr() would load the whole value (every overflow page) to return a slice of it: a 64 KiB
    chunk of a 20 MB message read 20 MB. sqlite3_blob_read reads only the pages it needs.
    """
    raw = conn.connection.driver_connection  # the sqlite3.Connection of this (reader) thread
    try:
        with raw.blobopen("blobs", "data", blob_id, readonly=True) as blob:
            size = len(blob)
            if start >= size:
                return b""
            blob.seek(start)
            return blob.read(min(end, size) - start)
    except sqlite3.OperationalError as exc:
        if "no such rowid" in str(exc):
            raise NotFound(f"no blob {blob_id}") from None
        if "null" not in str(exc):
            raise
    # The bytes are in the blob directory: its file is named by the hash (same read transaction).
    sha = conn.execute(select(t.blobs.c.sha256).where(t.blobs.c.id == blob_id)).scalar()
    if sha is None:
        raise NotFound(f"no blob {blob_id}")
    return (bytes(sha),)


async def read_raw_range_sqlite(db: Database, blob_id: int, start: int, end: int,
                                blob_dir: BlobDirectory | None) -> bytes:
    """`read_raw_range` on SQLite: only the pages of the range are read."""
    if not 0 <= start <= end:
        raise ValueError(f"bad byte range {start}-{end}")
    got = await db.read_sync(lambda conn: _sqlite_range(conn, blob_id, start, end))
    if isinstance(got, bytes):
        return got
    if blob_dir is None:
        raise NotFound(f"blob {blob_id} is kept in a blob directory, but none is configured")
    return await blob_dir.read_range(got[0], start, end)


async def read_raw_range(conn: AsyncConnection, blob_id: int, start: int, end: int,
                         blob_dir: BlobDirectory | None) -> bytes:
    """Bytes [start, end) of a blob (a MIME part at the offsets of its stored parse), the rest left unread."""
    if not 0 <= start <= end:
        raise ValueError(f"bad byte range {start}-{end}")
    b = t.blobs.c
    row = (await conn.execute(select(b.sha256, b.data.is_(None).label("in_file"),
                                     func.substr(b.data, start + 1, end - start).label("part"))
                              .where(b.id == blob_id))).first()
    if row is None:
        raise NotFound(f"no blob {blob_id}")
    if not row.in_file:
        return bytes(row.part or b"")
    if blob_dir is None:
        raise NotFound(f"blob {blob_id} is kept in a blob directory, but none is configured")
    return await blob_dir.read_range(bytes(row.sha256), start, end)


async def read_raw(conn: AsyncConnection, blob_id: int, blob_dir: BlobDirectory | None) -> bytes:
    row = (await conn.execute(select(t.blobs.c.sha256, t.blobs.c.data).where(t.blobs.c.id == blob_id))).first()
    if row is None:
        raise NotFound(f"no blob {blob_id}")
    if row.data is not None:
        return bytes(row.data)
    if blob_dir is None:
        raise NotFound(f"blob {blob_id} is kept in a blob directory, but none is configured")
    return await blob_dir.read(bytes(row.sha256))
