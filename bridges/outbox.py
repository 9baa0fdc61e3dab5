"""The durable webhook outbox: callbacks recorded inside the caller's transaction, claimed by senders with a lease.

What other code calls (issue 11 point 5; issue 12 uses it for registrations and receipts):

    delivery_id = await enqueue(conn, "oa", "registered", {"document": ..., "registration": ...})

`conn` is the caller's open AsyncConnection on the central database (so the callback commits
or rolls back with what it reports), or a `mailboxes.db.Database` (then it is its own
transaction). `enqueue_sync` does the same on a plain `Connection` inside `Database.write_sync`.
It returns the delivery id (the `webhook-id` header receivers dedupe on), or None when the
source has no webhook endpoint (nothing to send). After the caller's commit, `Sender.poke()`
(in `ctx.extras["webhooks"]`) sends at once; otherwise the sender finds it within IDLE_POLL_SECONDS.

Implementation notes (invariants; the same shape as delivery/queue.py):
- States: pending → sending (claimed: `claimed_by`, `claimed_until`) → delivered | pending
  (retry) | dead. A claim whose lease ran out (its node died) is due again: delivery is
  at least once, and receivers dedupe on the delivery id.
- Claiming selects due rows `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several nodes share the
  outbox; on SQLite the write transaction is exclusive (BEGIN IMMEDIATE). A sender only starts
  a request that ends (timeout included) before its lease does, and the lease is longer than
  the timeout (checked in the config): two live nodes never send one row at the same time.
- Settling is guarded by `claimed_by`: a node whose lease lapsed changes nothing.
- No network I/O with a transaction open: claim, commit, send, settle.
- The body is the exact JSON that is signed and sent, serialised once here (Standard
  Webhooks' payload shape: `{"type", "timestamp", "data"}`), at most MAX_BODY_BYTES.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from delivery.queue import aware, utcnow
from mailboxes import schema as t
from mailboxes.db import Database
from mailboxes.errors import InvalidInput, NotFound
from mailboxes.webhookendpoints import check_source

PENDING, SENDING, DELIVERED, DEAD = "pending", "sending", "delivered", "dead"
STATES = (PENDING, SENDING, DELIVERED, DEAD)
MAX_BODY_BYTES = 64 * 1024  # one callback's JSON; a workflow item's status, not its documents
MAX_ERROR_TEXT = 1000
KIND = re.compile(r"[a-z][a-z0-9._-]{0,63}")  # e.g. delivered, failed, registered, signed (fullmatch: linear)
PRUNE_BATCH = 1000


def new_delivery_id() -> str:
    """A delivery id: `msg_` and 128 random bits in hex (Standard Webhooks' `webhook-id`)."""
    return "msg_" + uuid.uuid4().hex


def _utc(d: datetime) -> datetime:
    if d.tzinfo is None:
        raise ValueError("outbox times must be timezone-aware")
    return d.astimezone(timezone.utc)


def build_body(kind: str, payload: Mapping[str, Any], now: datetime) -> bytes:
    """The signed JSON body; InvalidInput for a bad kind, a payload that is not JSON, or one too large."""
    if not isinstance(kind, str) or not KIND.fullmatch(kind):
        raise InvalidInput("a callback kind is 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter")
    if not isinstance(payload, Mapping):
        raise InvalidInput("a callback payload is a JSON object")
    doc = {"type": kind, "timestamp": _utc(now).isoformat(timespec="seconds").replace("+00:00", "Z"),
           "data": dict(payload)}
    try:
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"a callback payload must be plain JSON: {exc}") from None
    if len(body) > MAX_BODY_BYTES:
        raise InvalidInput(f"a callback body is at most {MAX_BODY_BYTES} bytes (this one is {len(body)})")
    return body


def _row(source: str, kind: str, payload: Mapping[str, Any], now: datetime) -> dict:
    check_source(source)
    now = _utc(now)
    return {"delivery_id": new_delivery_id(), "source": source, "kind": kind, "body": build_body(kind, payload, now),
            "state": PENDING, "attempts": 0, "created_at": now, "next_attempt_at": now}


_HAS_ENDPOINT = select(t.webhook_endpoints.c.source).where(t.webhook_endpoints.c.source == bindparam("source"))


async def enqueue(conn_or_db: AsyncConnection | Database, source: str, kind: str, payload: Mapping[str, Any],
                  *, clock: Callable[[], datetime] = utcnow) -> str | None:
    """Record a callback for `source` in the caller's transaction (or its own); its delivery id, or None.

    None: the source has no webhook endpoint, and nothing was recorded.
    """
    row = _row(source, kind, payload, clock())
    if isinstance(conn_or_db, Database):
        async with conn_or_db.write() as conn:
            return await _insert(conn, row)
    return await _insert(conn_or_db, row)


async def _insert(conn: AsyncConnection, row: dict) -> str | None:
    if (await conn.execute(_HAS_ENDPOINT, {"source": row["source"]})).first() is None:
        return None
    await conn.execute(insert(t.webhook_outbox).values(**row))
    return row["delivery_id"]


def enqueue_sync(conn: Connection, source: str, kind: str, payload: Mapping[str, Any],
                 *, clock: Callable[[], datetime] = utcnow) -> str | None:
    """`enqueue` for a synchronous transaction (a `Database.write_sync` function)."""
    if conn.execute(_HAS_ENDPOINT, {"source": source}).first() is None:
        return None
    row = _row(source, kind, payload, clock())
    conn.execute(insert(t.webhook_outbox).values(**row))
    return row["delivery_id"]


@dataclass(frozen=True)
class Claimed:
    """A callback this node now holds the lease for, with where it goes (url None: the endpoint was removed)."""

    id: int
    delivery_id: str
    source: str
    kind: str
    body: bytes
    attempts: int
    created_at: datetime
    claimed_until: datetime
    url: str | None
    secret: str | None

    def __repr__(self) -> str:  # never the secret
        return f"Claimed({self.delivery_id}, source={self.source}, kind={self.kind}, attempts={self.attempts})"


@dataclass(frozen=True)
class Settle:
    """The outcome of one attempt."""

    id: int
    state: str  # delivered | pending | dead
    attempts: int
    next_attempt_at: datetime | None = None
    status: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Callback:
    """What `postroom webhook show` and tests read."""

    delivery_id: str
    source: str
    kind: str
    body: bytes
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    settled_at: datetime | None
    last_status: int | None
    last_error: str | None


class Outbox:
    """The webhook_outbox rows: claim, settle, inspect; `clock` is passed in (tests move time)."""

    def __init__(self, db: Database, *, node: str, clock: Callable[[], datetime] = utcnow,
                 lease: timedelta = timedelta(seconds=60)) -> None:
        self.db = db
        self.node = node[:64]
        self.clock = clock
        self.lease = lease

    def _now(self) -> datetime:
        return _utc(self.clock())

    def _due(self, now: datetime):
        o = t.webhook_outbox.c
        return or_(and_(o.state == PENDING, o.next_attempt_at <= now),
                   and_(o.state == SENDING, o.claimed_until < now))

    async def claim(self, limit: int) -> list[Claimed]:
        """Take the lease on up to `limit` due callbacks, oldest due first."""
        if limit <= 0:
            return []
        now = self._now()
        until = now + self.lease
        o, e = t.webhook_outbox.c, t.webhook_endpoints.c
        async with self.db.write() as conn:
            q = select(o.id).where(self._due(now)).order_by(o.next_attempt_at, o.id).limit(limit)
            if self.db.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True)  # several nodes, one outbox
            ids = (await conn.execute(q)).scalars().all()
            if not ids:
                return []
            await conn.execute(update(t.webhook_outbox).where(o.id.in_(ids)).values(
                state=SENDING, claimed_by=self.node, claimed_until=until))
            rows = (await conn.execute(
                select(o.id, o.delivery_id, o.source, o.kind, o.body, o.attempts, o.created_at, e.url, e.secret)
                .select_from(t.webhook_outbox.outerjoin(t.webhook_endpoints, e.source == o.source))
                .where(o.id.in_(ids)).order_by(o.id))).all()
        return [Claimed(r.id, r.delivery_id, r.source, r.kind, bytes(r.body), r.attempts, aware(r.created_at),
                        until, r.url, r.secret) for r in rows]

    async def settle(self, s: Settle) -> bool:
        """Record an attempt's outcome; False when this node no longer held the row (its lease lapsed)."""
        o = t.webhook_outbox.c
        now = self._now()
        final = s.state in (DELIVERED, DEAD)
        async with self.db.write() as conn:
            res = await conn.execute(update(t.webhook_outbox).where(and_(
                o.id == s.id, o.state == SENDING, o.claimed_by == self.node)).values(
                state=s.state, attempts=s.attempts, claimed_by=None, claimed_until=None,
                next_attempt_at=_utc(s.next_attempt_at) if s.next_attempt_at else now,
                settled_at=now if final else None, last_status=s.status,
                last_error=(s.error or "")[:MAX_ERROR_TEXT] or None))
        return bool(res.rowcount)

    async def next_due(self) -> datetime | None:
        """When the earliest callback becomes due (a lapsing lease counts too)."""
        o = t.webhook_outbox.c
        async with self.db.read() as conn:
            a = (await conn.execute(select(func.min(o.next_attempt_at)).where(o.state == PENDING))).scalar()
            b = (await conn.execute(select(func.min(o.claimed_until)).where(o.state == SENDING))).scalar()
        times = [aware(x) for x in (a, b) if x is not None]
        return min(times) if times else None

    async def callbacks(self, *, source: str | None = None, state: str | None = None,
                        delivery_id: str | None = None, limit: int = 1000) -> list[Callback]:
        o = t.webhook_outbox.c
        q = select(t.webhook_outbox).order_by(o.id).limit(limit)
        if source is not None:
            q = q.where(o.source == source)
        if state is not None:
            q = q.where(o.state == state)
        if delivery_id is not None:
            q = q.where(o.delivery_id == delivery_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [Callback(r.delivery_id, r.source, r.kind, bytes(r.body), r.state, r.attempts, aware(r.created_at),
                         aware(r.next_attempt_at), aware(r.settled_at), r.last_status, r.last_error) for r in rows]

    async def callback(self, delivery_id: str) -> Callback:
        found = await self.callbacks(delivery_id=delivery_id, limit=1)
        if not found:
            raise NotFound(f"no webhook callback {delivery_id}")
        return found[0]

    async def retry(self, delivery_id: str) -> None:
        """Send a dead (or waiting) callback again now, with a fresh max age (an administrator's retry)."""
        o = t.webhook_outbox.c
        now = self._now()
        async with self.db.write() as conn:
            res = await conn.execute(update(t.webhook_outbox).where(and_(
                o.delivery_id == delivery_id, o.state.in_((PENDING, DEAD)))).values(
                state=PENDING, next_attempt_at=now, created_at=now, settled_at=None))
        if not res.rowcount:
            raise NotFound(f"no waiting or dead webhook callback {delivery_id}")

    async def prune(self, older_than: timedelta) -> int:
        """Forget up to PRUNE_BATCH delivered or dead callbacks settled more than `older_than` ago."""
        o = t.webhook_outbox.c
        cutoff = self._now() - older_than
        async with self.db.write() as conn:
            ids = (await conn.execute(select(o.id).where(and_(
                o.state.in_((DELIVERED, DEAD)), o.settled_at < cutoff)).limit(PRUNE_BATCH))).scalars().all()
            if ids:
                await conn.execute(delete(t.webhook_outbox).where(o.id.in_(ids)))
        return len(ids)
