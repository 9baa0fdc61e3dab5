"""The tamper-evident audit log: hash-chained appends, anchors in a separate file, and the verifier.

Each entry's `hash` is SHA-256 over a canonical JSON serialisation of its
sequence number, time, actor, action, target, detail and the previous entry's
hash (`prev_hash`; the first entry's is GENESIS). Appends are serialised: on
PostgreSQL under a transaction-scoped advisory lock (several nodes share one
database), on SQLite by its single writer. An anchor line (sequence, hash,
time) appended to a file outside the database lets `verify` see a truncated end.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import insert, or_, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema as t

log = logging.getLogger("postroom.audit")

GENESIS = "0" * 64
ADVISORY_KEY = 0x5041_5544  # the PostgreSQL advisory lock serialising audit appends ("PAUD")
ACTIVITY = ("message.sent", "mailbox.read")  # with login.*: entries of use, not of administration
VERIFY_BATCH = 1000  # rows read per query while verifying
VERIFY_PAUSE = 0.01  # seconds between batches when a serving process verifies (verify_off_loop)
CSV_COLUMNS = ("seq", "at", "actor", "action", "target", "detail", "hash")  # `audit export --csv`, console export


def _iso(at: datetime) -> str:
    if at.tzinfo is None:  # SQLite hands back naive datetimes; they were stored in UTC
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(seq: int, at: datetime, actor: str, action: str, target: str, detail: str, prev_hash: str) -> str:
    """SHA-256 (hex) of the canonical serialisation of one entry."""
    canon = json.dumps([seq, _iso(at), actor, action, target, detail, prev_hash],
                       ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


async def append(conn: AsyncConnection, *, at: datetime, actor: str, action: str, target: str,
                 detail: str) -> int:
    """Append one entry in the caller's write transaction; returns its sequence number."""
    return await append_many(conn, [(at, actor, action, target, detail)])


async def append_many(conn: AsyncConnection, entries: list[tuple[datetime, str, str, str, str]]) -> int:
    """Append (at, actor, action, target, detail) entries in order, in one statement; returns the last seq."""
    return await conn.run_sync(append_many_sync, entries)


def append_many_sync(conn: Connection, entries: list[tuple[datetime, str, str, str, str]]) -> int:
    """`append_many` on a synchronous connection (Database.write_sync: the whole append in the writer's thread)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_KEY})
    seq, prev = _head_sync(conn)
    rows = []
    for at, actor, action, target, detail in entries:
        seq += 1
        digest = entry_hash(seq, at, actor, action, target, detail, prev)
        rows.append(dict(seq=seq, at=at, actor=actor, action=action, target=target, detail=detail,
                         prev_hash=prev, hash=digest))
        prev = digest
    conn.execute(insert(t.audit_log), rows)
    return seq


@dataclass(frozen=True)
class Problem:
    """The first bad place found: the entry's sequence number (or the anchor's) and what is wrong."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"audit entry {self.seq}: {self.reason}"


async def head(conn: AsyncConnection) -> tuple[int, str]:
    return await conn.run_sync(_head_sync)


def _head_sync(conn: Connection) -> tuple[int, str]:
    c = t.audit_log.c
    row = conn.execute(select(c.seq, c.hash).order_by(c.seq.desc()).limit(1)).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


def write_anchor(path: Path, seq: int, digest: str, now: datetime) -> None:
    """Append one anchor line `seq hash time` to the file (made with its directory if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="ascii") as f:
        f.write(f"{seq} {digest} {_iso(now)}\n")


def read_anchors(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            out.append((int(parts[0]), parts[1]))
    return out


class _Walk:
    """The verifier's state across batches of rows read in sequence order (pure: no I/O, may run in a thread)."""

    def __init__(self, anchors: list[tuple[int, str]]) -> None:
        self.anchors = anchors
        self.expected_seq, self.prev, self.count, self.last = 1, GENESIS, 0, 0
        self.hashes: dict[int, str] = {}
        self.wanted = {s for s, _ in anchors}

    def feed(self, rows) -> Problem | None:
        for r in rows:
            if r.seq != self.expected_seq:
                return Problem(self.expected_seq, f"missing (deleted); the next entry present is {r.seq}")
            if r.prev_hash != self.prev:
                return Problem(r.seq, "does not link to the previous entry (deleted or reordered)")
            if entry_hash(r.seq, r.at, r.actor, r.action, r.target, r.detail, r.prev_hash) != r.hash:
                return Problem(r.seq, "its content does not match its hash (edited)")
            if r.seq in self.wanted:
                self.hashes[r.seq] = r.hash
            self.prev, self.last, self.count, self.expected_seq = r.hash, r.seq, self.count + 1, r.seq + 1
        return None

    def finish(self) -> Problem | None:
        for seq, digest in self.anchors:
            if seq > self.last:
                return Problem(self.last + 1, f"missing: anchor names entry {seq} but the log ends at {self.last} "
                                              "(truncated)")
            if seq > 0 and self.hashes.get(seq) != digest:
                return Problem(seq, "differs from its anchor (rewritten)")
        return None

    def batch(self):
        c = t.audit_log.c
        return select(t.audit_log).where(c.seq >= self.expected_seq).order_by(c.seq).limit(VERIFY_BATCH)


async def verify(conn: AsyncConnection, anchors: list[tuple[int, str]]) -> tuple[int, Problem | None]:
    """Walk the chain in sequence order; returns (entries checked, first problem or None).

    Finds an edited entry (its hash no longer matches), a deleted or reordered
    one (a gap in the sequence or a broken link) and a truncated end (an anchor
    naming a sequence beyond the last entry, or whose hash differs)."""
    walk = _Walk(anchors)
    while True:
        rows = (await conn.execute(walk.batch())).all()
        if (problem := walk.feed(rows)) is not None:
            return walk.count, problem
        if len(rows) < VERIFY_BATCH:
            return walk.count, walk.finish()


async def verify_off_loop(db, anchors: list[tuple[int, str]], *, pause: float = VERIFY_PAUSE
                          ) -> tuple[int, Problem | None]:
    """`verify` for a serving process: each batch read in its own short transaction (Database.read_sync),
    hashed in a worker thread, then `pause` seconds before the next (so a big log costs the loop nothing and the database
    a bounded share). Entries appended meanwhile are checked too when reached."""
    walk = _Walk(anchors)
    while True:
        q = walk.batch()
        rows = await db.read_sync(lambda conn: conn.execute(q).all())  # SQLite: rows made in its thread too
        if (problem := await asyncio.to_thread(walk.feed, rows)) is not None:
            return walk.count, problem
        if len(rows) < VERIFY_BATCH:
            return walk.count, walk.finish()
        await asyncio.sleep(pause)


MAX_PENDING = 1000  # entries buffered before `record` waits for the writer (back-pressure, bounded memory)
FLUSH_BATCH = 200  # entries appended per transaction


class BufferedAudit:
    """Entries recorded on a hot path (logins, sends, shared-mailbox reads) are appended in batches.

    `record` costs no database round trip on the caller's path: entries are
    queued and one writer task appends them, up to FLUSH_BATCH per transaction,
    in the order recorded. When MAX_PENDING are waiting, `record` waits for the
    writer, so memory stays bounded. `flush` waits until all are written
    (called on close and by tests)."""

    def __init__(self, db, clock) -> None:
        self.db, self.clock = db, clock
        self._pending: list[tuple] = []
        self._task: asyncio.Task | None = None

    async def record(self, actor: str, action: str, target: str, detail: dict) -> None:
        self._pending.append((self.clock(), actor[:320], action[:64], target[:512],
                              json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True)))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        if len(self._pending) >= MAX_PENDING:
            await self.flush()

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:FLUSH_BATCH], self._pending[FLUSH_BATCH:]
            try:
                # One hand-off to the writer's thread: as `async with db.write()` the append held the
                # shared SQLite writer across two round trips through this (busy) event loop, ~2 s of
                # 12 s in a flow of 1,000 workflow notifications a second (one "message.sent" each).
                await self.db.write_sync(lambda conn, _blocking, b=batch: append_many_sync(conn, b))
            except Exception:
                log.exception("audit: %d entries could not be written", len(batch))


def query(*, actor=None, action=None, target=None, since=None, until=None, newest_first=True, limit=0, offset=0,
          actors=None, text=None, before=None, after=None):
    """The select of entries matching the filters (shared by the CLI, the console and the API).

    `text`: a case-insensitive substring of the actor, target or detail (LIKE wildcards in it are
    literal); `before` / `after`: sequence bounds (exclusive), for keyset paging."""
    c = t.audit_log.c
    q = select(t.audit_log)
    if text:
        q = q.where(or_(c.actor.icontains(text, autoescape=True), c.target.icontains(text, autoescape=True),
                        c.detail.icontains(text, autoescape=True)))
    if before is not None:
        q = q.where(c.seq < before)
    if after is not None:
        q = q.where(c.seq > after)
    if actor:
        q = q.where(c.actor == actor)
    if actors is not None:
        q = q.where(c.actor.in_(actors))
    if action:
        q = q.where(c.action == action)
    if target:
        q = q.where(c.target == target)
    if since:
        q = q.where(c.at >= since)
    if until:
        q = q.where(c.at < until)
    q = q.order_by(c.seq.desc() if newest_first else c.seq)
    if limit:
        q = q.limit(limit)
    return q.offset(offset) if offset else q


def csv_text(rows, *, header: bool = False) -> str:
    """Rows of audit_log as CSV lines in CSV_COLUMNS order (the CLI's export and the console's)."""
    out = io.StringIO()
    w = csv.writer(out)
    if header:
        w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([getattr(r, k) for k in CSV_COLUMNS])
    return out.getvalue()
