"""The durable outbound queue: rows in the central database, enqueued by group commit, claimed by workers.

Implementation notes (invariants):
- A message is one `queue_messages` row plus one `queue_recipients` row per
  recipient; both are written in one transaction (design.md seam 4). Concurrent
  enqueues share a transaction and a disk sync (mailboxes.groupcommit).
- Claiming marks due rows `delivering` with a lease (`claimed_until`). On
  PostgreSQL the due rows are selected `FOR UPDATE SKIP LOCKED`, so several
  nodes share one queue; on SQLite the write transaction is exclusive
  (BEGIN IMMEDIATE), which gives the same guarantee. A claim whose lease ran
  out (its node died) is due again.
- A node id names one process (host, pid, random: `node_id`), never a host:
  on a shared PostgreSQL a restarting node must not touch its peers' claims.
  Claims are released by lease expiry only, never by matching a node name;
  a live worker renews the leases it holds (`renew`), so a lease can be short
  and a crashed node's deliveries are due again within DEFAULT_LEASE.
- No network I/O while a transaction is open: claim, commit, deliver, settle.
- Datetimes are written in UTC; SQLite keeps them as sortable text without an
  offset, so they are made aware again when read.
"""

from __future__ import annotations

import base64
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, bindparam, case, delete, exists, func, insert, or_, select, update

from mailboxes import schema as t
from mailboxes.db import Database
from mailboxes.errors import InvalidInput, NotFound
from mailboxes.groupcommit import GroupCommitter

from .priority import ROUTINE

QUEUED, HELD, DELIVERING, SENT, FAILED = "queued", "held", "delivering", "sent", "failed"
PENDING = (QUEUED, HELD, DELIVERING)
DEFAULT_LEASE = timedelta(seconds=30)  # a claim not renewed for this long is taken to be orphaned (renewed every 10 s)
MAX_ERROR_TEXT = 1000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(d: datetime | None) -> datetime | None:
    if d is None:
        return None
    return d.replace(tzinfo=timezone.utc) if d.tzinfo is None else d.astimezone(timezone.utc)


def node_id(hostname: str | None = None) -> str:
    """A name for this process's claims, unique across hosts and restarts: host, pid and 32 random bits."""
    host = (hostname or socket.gethostname() or "node")[:40]
    return f"{host}/{os.getpid()}/{secrets.token_hex(4)}"


def new_queue_id() -> str:
    """A short id operators can grep for: 40 bits of milliseconds then 40 random bits, base32.

    It names a message in logs and the queue; it is no secret, so a fast PRNG will do.
    """
    raw = ((int(time.time() * 1000) & 0xFFFFFFFFFF) << 40 | random.getrandbits(40)).to_bytes(10, "big")
    return base64.b32encode(raw).decode("ascii")


@dataclass(frozen=True)
class NewEntry:
    """One message to queue: envelope, bytes and where it came from."""

    queue_id: str
    mail_from: str  # "" for the null reverse-path (DSNs)
    recipients: tuple[str, ...]
    data: bytes
    origin: str = "smtp"
    submitter: str | None = None
    priority: int = ROUTINE  # delivery.priority: 0 特急, 1 加急, 2 routine


@dataclass(frozen=True)
class Claimed:
    """A recipient row a worker now holds the lease for, with its message's envelope."""

    recipient_id: int
    message_id: int
    queue_id: str
    mail_from: str
    rcpt: str
    domain: str
    attempts: int
    warned: bool
    created_at: datetime
    priority: int = ROUTINE


@dataclass(frozen=True)
class Settle:
    """The outcome of one attempt for one recipient row."""

    recipient_id: int
    state: str  # sent | failed | queued
    attempts: int
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    warned: bool | None = None
    link: str | None = None  # the link ("host:port") it failed to reach, released when that is up (delivery.links)


@dataclass(frozen=True)
class RecipientInfo:
    rcpt: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class EntryInfo:
    """What `postroom queue list/show` prints."""

    queue_id: str
    mail_from: str
    size: int
    created_at: datetime
    origin: str
    submitter: str | None
    recipients: tuple[RecipientInfo, ...]


def _domain(rcpt: str) -> str:
    return rcpt.rpartition("@")[2].lower()


class Queue:
    def __init__(self, db: Database, *, node: str, clock: Callable[[], datetime] = utcnow,
                 lease: timedelta = DEFAULT_LEASE) -> None:
        self.db = db
        self.node = node[:64]
        self.clock = clock
        self.lease = lease
        self._committer: GroupCommitter[NewEntry, None] = GroupCommitter(self._insert_batch)
        self.listeners: list[Callable[[], None]] = []  # told after new rows are committed (the worker's poke)

    async def close(self) -> None:
        await self._committer.close()

    def _now(self) -> datetime:
        return self.clock().astimezone(timezone.utc)  # SQLite keeps the digits only: always UTC

    # --- enqueue (group commit) ---------------------------------------------------

    async def enqueue(self, entry: NewEntry) -> None:
        """Write the message and its recipients; durable when this returns."""
        if not entry.recipients:
            raise InvalidInput("nothing to queue: no recipients")
        await self._committer.submit(entry)
        for notify in self.listeners:  # commit first, then broadcast
            notify()

    async def _insert_batch(self, entries: list[NewEntry]) -> list[None]:
        now = self._now()
        async with self.db.write() as conn:
            ids = (await conn.execute(
                insert(t.queue_messages).returning(t.queue_messages.c.id, sort_by_parameter_order=True),
                [{"queue_id": e.queue_id, "mail_from": e.mail_from, "data": e.data, "size": len(e.data),
                  "created_at": now, "submitter": e.submitter, "origin": e.origin} for e in entries])).scalars().all()
            rows = [{"message_id": mid, "rcpt": r, "domain": _domain(r), "state": QUEUED, "attempts": 0,
                     "next_attempt_at": now, "warned": False,
                     "priority": e.priority}
                    for mid, e in zip(ids, entries) for r in dict.fromkeys(e.recipients)]
            await conn.execute(insert(t.queue_recipients), rows)
        return [None] * len(entries)

    # --- workers ----------------------------------------------------------------------

    def _due(self, now: datetime):
        r = t.queue_recipients.c
        return or_(and_(r.state == QUEUED, r.next_attempt_at <= now),
                   and_(r.state == DELIVERING, r.claimed_until < now))

    async def claim(self, limit: int) -> list[Claimed]:
        """Take the lease on up to `limit` due recipient rows: 特急, then 加急, then routine; oldest due first in each."""
        now = self._now()
        r, m = t.queue_recipients.c, t.queue_messages.c
        async with self.db.write() as conn:
            q = select(r.id).where(self._due(now)).order_by(r.priority, r.next_attempt_at, r.id).limit(limit)
            if self.db.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True)  # several nodes, one queue
            ids = (await conn.execute(q)).scalars().all()
            if not ids:
                return []
            # next_attempt_at = the lease end marks "no retry asked for during this attempt";
            # `retry` sets it earlier, and `settle` then keeps that (see settle).
            await conn.execute(update(t.queue_recipients).where(r.id.in_(ids)).values(
                state=DELIVERING, claimed_by=self.node, claimed_until=now + self.lease,
                next_attempt_at=now + self.lease))
            rows = (await conn.execute(
                select(r.id, r.message_id, m.queue_id, m.mail_from, r.rcpt, r.domain, r.attempts, r.warned,
                       m.created_at, r.priority)
                .select_from(t.queue_recipients.join(t.queue_messages, r.message_id == m.id))
                .where(r.id.in_(ids)).order_by(r.priority, r.message_id, r.id))).all()
        return [Claimed(x.id, x.message_id, x.queue_id, x.mail_from, x.rcpt, x.domain, x.attempts,
                        bool(x.warned), aware(x.created_at), x.priority) for x in rows]

    async def data(self, message_id: int) -> bytes:
        async with self.db.read() as conn:
            d = (await conn.execute(select(t.queue_messages.c.data)
                                    .where(t.queue_messages.c.id == message_id))).scalar()
        if d is None:
            raise NotFound("queued message no longer exists")
        return bytes(d)

    async def data_many(self, message_ids: Iterable[int]) -> dict[int, bytes]:
        """The bytes of several queued messages (those deleted meanwhile are missing)."""
        ids = list(message_ids)
        if not ids:
            return {}
        m = t.queue_messages.c
        async with self.db.read() as conn:
            return {i: bytes(d) for i, d in (await conn.execute(select(m.id, m.data).where(m.id.in_(ids)))).all()}

    async def data_of(self, queue_id: str) -> bytes:
        """The queued bytes of a message by its queue id (`postroom queue show`)."""
        async with self.db.read() as conn:
            d = (await conn.execute(select(t.queue_messages.c.data)
                                    .where(t.queue_messages.c.queue_id == queue_id))).scalar()
        if d is None:
            raise NotFound(f"no queued message {queue_id}")
        return bytes(d)

    async def settle(self, outcomes: Iterable[Settle]) -> None:
        """Record attempt outcomes; messages with no pending recipient left are removed."""
        outcomes = list(outcomes)
        if not outcomes:
            return
        r = t.queue_recipients.c
        now = self._now()
        async with self.db.write() as conn:
            msg_ids = set((await conn.execute(select(r.message_id).where(
                r.id.in_([o.recipient_id for o in outcomes])))).scalars().all())
            await conn.execute(
                update(t.queue_recipients).where(and_(r.id == bindparam("b_id"), r.claimed_by == self.node))
                .values(state=bindparam("b_state"), attempts=bindparam("b_attempts"),
                        # A `queue retry` that came in during the attempt wins over the back-off.
                        next_attempt_at=case((r.next_attempt_at < r.claimed_until, r.next_attempt_at),
                                             else_=bindparam("b_next")), last_error=bindparam("b_error"),
                        warned=bindparam("b_warned"), link=bindparam("b_link"), claimed_by=None,
                        claimed_until=None),
                [{"b_id": o.recipient_id, "b_state": o.state, "b_attempts": o.attempts,
                  "b_next": (o.next_attempt_at or now).astimezone(timezone.utc),
                  "b_error": (o.last_error or "")[:MAX_ERROR_TEXT] or None,
                  "b_warned": bool(o.warned), "b_link": o.link} for o in outcomes])
            await self._purge(conn, msg_ids)

    async def _purge(self, conn, msg_ids: Iterable[int]) -> None:
        r = t.queue_recipients.c
        msg_ids = list(msg_ids)
        if not msg_ids:
            return
        live = set((await conn.execute(select(r.message_id).where(and_(
            r.message_id.in_(msg_ids), r.state.in_(PENDING))))).scalars().all())
        done = [i for i in msg_ids if i not in live]
        if done:
            await conn.execute(delete(t.queue_recipients).where(r.message_id.in_(done)))
            await conn.execute(delete(t.queue_messages).where(t.queue_messages.c.id.in_(done)))

    async def renew(self, recipient_ids: Iterable[int]) -> int:
        """Extend this node's leases on rows it still holds; returns how many were extended."""
        ids = list(recipient_ids)
        if not ids:
            return 0
        r = t.queue_recipients.c
        until = self._now() + self.lease
        async with self.db.write() as conn:
            res = await conn.execute(update(t.queue_recipients).where(and_(
                r.id.in_(ids), r.state == DELIVERING, r.claimed_by == self.node)).values(
                # next_attempt_at == claimed_until means "no retry asked for during the attempt" (see claim).
                next_attempt_at=case((r.next_attempt_at == r.claimed_until, until), else_=r.next_attempt_at),
                claimed_until=until))
        return res.rowcount or 0

    async def release_stale_claims(self) -> int:
        """At start-up: claims whose lease ran out (their node died) are marked queued and due at once.

        Only lease expiry decides: a claim that is still leased belongs to a live
        process (this node's id is new at every start, see `node_id`), whatever its name.
        """
        r = t.queue_recipients.c
        now = self._now()
        async with self.db.write() as conn:
            res = await conn.execute(update(t.queue_recipients).where(and_(
                r.state == DELIVERING, r.claimed_until < now)).values(
                state=QUEUED, claimed_by=None, claimed_until=None, next_attempt_at=now))
        return res.rowcount or 0

    async def next_due(self) -> datetime | None:
        """When the earliest queued row becomes due (a lease expiry counts too)."""
        r = t.queue_recipients.c
        async with self.db.read() as conn:
            a = (await conn.execute(select(func.min(r.next_attempt_at)).where(r.state == QUEUED))).scalar()
            b = (await conn.execute(select(func.min(r.claimed_until)).where(r.state == DELIVERING))).scalar()
        times = [aware(x) for x in (a, b) if x is not None]
        return min(times) if times else None

    async def pending_count(self) -> int:
        r = t.queue_recipients.c
        async with self.db.read() as conn:
            return int((await conn.execute(select(func.count()).where(r.state.in_(PENDING)))).scalar_one())

    # --- administration ---------------------------------------------------------------

    async def entries(self, queue_id: str | None = None) -> list[EntryInfo]:
        m, r = t.queue_messages.c, t.queue_recipients.c
        q = select(m.id, m.queue_id, m.mail_from, m.size, m.created_at, m.origin, m.submitter).order_by(m.id)
        if queue_id is not None:
            q = q.where(m.queue_id == queue_id)
        async with self.db.read() as conn:
            msgs = (await conn.execute(q)).all()
            rcpts = (await conn.execute(select(r.message_id, r.rcpt, r.state, r.attempts, r.next_attempt_at,
                                               r.last_error).where(r.message_id.in_([x.id for x in msgs]))
                                        .order_by(r.id))).all() if msgs else []
        by_msg: dict[int, list[RecipientInfo]] = {}
        for x in rcpts:
            by_msg.setdefault(x.message_id, []).append(
                RecipientInfo(x.rcpt, x.state, x.attempts, aware(x.next_attempt_at), x.last_error))
        return [EntryInfo(x.queue_id, x.mail_from, x.size, aware(x.created_at), x.origin, x.submitter,
                          tuple(by_msg.get(x.id, ()))) for x in msgs]

    async def entry(self, queue_id: str) -> EntryInfo:
        found = await self.entries(queue_id)
        if not found:
            raise NotFound(f"no queued message {queue_id}")
        return found[0]

    async def _message_id(self, conn, queue_id: str) -> int:
        mid = (await conn.execute(select(t.queue_messages.c.id)
                                  .where(t.queue_messages.c.queue_id == queue_id))).scalar()
        if mid is None:
            raise NotFound(f"no queued message {queue_id}")
        return mid

    async def retry(self, queue_id: str | None = None) -> int:
        """Make queued rows (of one message, or all) due now; returns how many.

        A row being delivered right now is due again as soon as that attempt ends
        (unless it succeeds), instead of after its back-off.
        """
        r = t.queue_recipients.c
        async with self.db.write() as conn:
            where = r.state.in_((QUEUED, DELIVERING))
            if queue_id is not None:
                where = and_(where, r.message_id == await self._message_id(conn, queue_id))
            res = await conn.execute(update(t.queue_recipients).where(where).values(next_attempt_at=self._now()))
        return res.rowcount or 0

    async def hold(self, queue_id: str) -> int:
        r = t.queue_recipients.c
        async with self.db.write() as conn:
            mid = await self._message_id(conn, queue_id)
            res = await conn.execute(update(t.queue_recipients).where(and_(
                r.message_id == mid, r.state == QUEUED)).values(state=HELD))
        return res.rowcount or 0

    async def release(self, queue_id: str) -> int:
        r = t.queue_recipients.c
        async with self.db.write() as conn:
            mid = await self._message_id(conn, queue_id)
            res = await conn.execute(update(t.queue_recipients).where(and_(
                r.message_id == mid, r.state == HELD)).values(state=QUEUED, next_attempt_at=self._now()))
        return res.rowcount or 0

    async def delete(self, queue_id: str) -> None:
        """Drop a message without a bounce (a row being delivered right now may still go out)."""
        async with self.db.write() as conn:
            mid = await self._message_id(conn, queue_id)
            await conn.execute(delete(t.queue_recipients).where(t.queue_recipients.c.message_id == mid))
            await conn.execute(delete(t.queue_messages).where(t.queue_messages.c.id == mid))

    async def contains(self, queue_id: str) -> bool:
        async with self.db.read() as conn:
            return bool((await conn.execute(select(exists().where(
                t.queue_messages.c.queue_id == queue_id)))).scalar())
