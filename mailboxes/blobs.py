"""Content-addressed message blobs (SHA-256): one copy per partition however many recipients."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema as t
from . import search, substring
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
    """Blobs as files under `root/ab/cd/<sha>`; written and fsynced before the row commits."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, sha: bytes) -> Path:
        h = sha.hex()
        return self.root / h[:2] / h[2:4] / h

    def _write(self, sha: bytes, raw: bytes) -> None:
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
        await asyncio.to_thread(self._write, sha, raw)

    async def read(self, sha: bytes) -> bytes:
        try:
            return await asyncio.to_thread(self.path(sha).read_bytes)
        except FileNotFoundError:
            raise NotFound(f"blob {sha.hex()} is missing from the blob directory") from None


def sha256(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


async def put_many(conn: AsyncConnection, items: list[PreparedMessage],
                   blob_dir: BlobDirectory | None) -> list[int]:
    """Store each message's blob (once per distinct hash) in this transaction; return blob ids."""
    shas = list(dict.fromkeys(p.sha256 for p in items))
    existing: dict[bytes, int] = {}
    for i in range(0, len(shas), 500):
        chunk = shas[i : i + 500]
        rows = (await conn.execute(select(t.blobs.c.sha256, t.blobs.c.id)
                                   .where(t.blobs.c.sha256.in_(chunk)))).all()
        existing.update({bytes(r.sha256): r.id for r in rows})
    new = {}
    for p in items:
        if p.sha256 not in existing and p.sha256 not in new:
            new[p.sha256] = p
    if new:
        if blob_dir is not None:
            for p in new.values():
                await blob_dir.write(p.sha256, p.raw)
        # One statement for the whole batch (executemany with RETURNING, in parameter order).
        res = await conn.execute(
            t.blobs.insert().returning(t.blobs.c.id, sort_by_parameter_order=True),
            [{"sha256": p.sha256, "size": p.size, "data": None if blob_dir else p.raw,
              "parsed": p.parsed_json, "sent_at": p.sent_at} for p in new.values()])
        for sha, blob_id in zip(new, res.scalars().all()):
            existing[sha] = blob_id
        await search.index_blobs(conn, [(existing[s], p.subject, p.addrs, p.body_text)
                                        for s, p in new.items()])
        await substring.index_blobs(conn, [(existing[s], p.head_text, p.body_text) for s, p in new.items()])
    return [existing[p.sha256] for p in items]


async def read_raw(conn: AsyncConnection, blob_id: int, blob_dir: BlobDirectory | None) -> bytes:
    row = (await conn.execute(select(t.blobs.c.sha256, t.blobs.c.data).where(t.blobs.c.id == blob_id))).first()
    if row is None:
        raise NotFound(f"no blob {blob_id}")
    if row.data is not None:
        return bytes(row.data)
    if blob_dir is None:
        raise NotFound(f"blob {blob_id} is kept in a blob directory, but none is configured")
    return await blob_dir.read(bytes(row.sha256))
