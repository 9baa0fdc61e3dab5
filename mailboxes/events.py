"""Workflow events in the central database: sources and their tokens, accepted events, claims, preferences, digests.

Implementation notes (invariants)
- `accept` commits the event rows before it returns (the API answers 202 after it): concurrent
  accepts share one transaction (mailboxes.groupcommit). A row is inserted with ON CONFLICT DO
  NOTHING on (source, id); a post that finds a row gets that row back, so a retried or concurrent
  post of one id is stored once and answered with the first result.
- Rows are claimed as the delivery queue's are (delivery/queue.py): due rows (pending, or
  delivering with a lapsed lease) are marked delivering with a lease; `FOR UPDATE SKIP LOCKED`
  on PostgreSQL, the exclusive write transaction on SQLite. A claim with `attempts > 0` was
  interrupted (the process died while delivering): the worker checks what already arrived.
- No network I/O while a transaction is open: claim, commit, deliver, settle.
- Digest items are claimed the same way (`due_digests`), their lease kept in `due_at`: one
  node sends one person's digest of a period.
- A settle changes only the claim it settles (state delivering, the claim's `attempts`): a
  node whose lease lapsed and was claimed again changes nothing (`claim` returns the rows as
  they were before it counted itself in `attempts`). `settle_hooks` run inside the
  settle's transaction, only for a final outcome (sent, failed) that changed the row: what they
  write (the webhook outbox's delivered/failed callback) commits with the outcome, once.
- The hot transactions (accept's batch, claim, the settle batch) are one synchronous function
  each (`Database.write_sync`): on SQLite a single hand-off to the writer's thread rather than
  one per statement, so settle hooks are synchronous too.
- Datetimes are stored in UTC and made aware again when read (SQLite keeps digits only).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from . import pgbus
from . import schema as t
from .apitokens import ApiToken, ApiTokens, forget_live_tokens
from .db import Database
from .errors import AlreadyExists, InvalidInput, NotFound
from .groupcommit import GroupCommitter, LateGroupCommitter
from .websessions import _aware, utcnow

PENDING, DELIVERING, SENT, FAILED = "pending", "delivering", "sent", "failed"
STATES = (PENDING, DELIVERING, SENT, FAILED)
MODES = ("immediate", "hourly", "daily")
MAX_SOURCE_NAME = 64  # the column's width
EVENT_LEASE = timedelta(seconds=30)  # a claim not settled for this long was orphaned (its node died)
MAX_ERROR_TEXT = 1000
WAKE_TOPIC = "events"  # the change bus's wake-up for the events workers (new rows, a resend)
BUSY_POSTS = 4  # posts waiting for their answer at once from which the intake is busy (the worker waits)
BUSY_LINGER = 0.02  # seconds the intake stays busy after the last time it was
monotonic = time.monotonic  # the intake's clock (tests move it)
DIGEST_LOCK_BASE = 0x4449_4745 << 32  # + account id: PostgreSQL advisory lock of one person's digest claim ("DIGE")
MODES_CHUNK = 1000  # account ids in one preferences query (bound parameters per statement)


def _maybe(d: datetime | None) -> datetime | None:
    return None if d is None else _aware(d)


@dataclass(frozen=True)
class Source:
    id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewEvent:
    """A validated event to store (bridges.validate builds it; recipients already expanded)."""

    source_id: int
    ext_id: str
    type: str
    item: str
    urgency: str
    locale: str
    payload: dict
    fingerprint: bytes
    recipients: tuple[tuple[int, str], ...]  # (account id, address) of everyone it reaches
    unknown: tuple[dict, ...]
    queue_id: str


@dataclass(frozen=True)
class Event:
    id: int
    source_id: int
    ext_id: str
    type: str
    item: str
    urgency: str
    locale: str
    payload: dict
    fingerprint: bytes
    recipients: tuple[tuple[int, str], ...]  # (account id, address)
    unknown: tuple[dict, ...]
    state: str
    attempts: int
    queue_id: str
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class DigestItem:
    id: int
    account_id: int
    event: Event


def _event(r) -> Event:
    return Event(r.id, r.source_id, r.ext_id, r.type, r.item, r.urgency, r.locale, json.loads(r.payload),
                 r.fingerprint, tuple((i, a) for i, a in json.loads(r.recipients)), tuple(json.loads(r.unknown)), r.state,
                 r.attempts, r.queue_id, _aware(r.created_at), _maybe(r.sent_at), r.last_error)


def _source(r) -> Source:
    return Source(r.id, r.name, _aware(r.created_at), _maybe(r.revoked_at))


# Runs inside the settle's write transaction (Database.write_sync: a plain Connection, in the database's thread),
# once per transaction, with (claimed event, sent or failed, error) of each final outcome it changed.
Settled = tuple[Event, str, "str | None"]
SettleHook = Callable[[Connection, list[Settled]], None]

_INSERTS = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def _row(e: NewEvent, now: datetime) -> dict:
    """The events row of a new event, made on the event loop before its write: on SQLite the write
    holds the lock every worker process writes under (db.WriteLock), so it holds it for the statements only."""
    return dict(source_id=e.source_id, ext_id=e.ext_id, type=e.type, item=e.item, urgency=e.urgency, locale=e.locale,
                payload=json.dumps(e.payload, ensure_ascii=False), fingerprint=e.fingerprint,
                recipients=json.dumps([list(p) for p in e.recipients]),
                unknown=json.dumps(list(e.unknown), ensure_ascii=False),
                state=PENDING, attempts=0, next_attempt_at=now, queue_id=e.queue_id, created_at=now)


@functools.cache
def _settle_statement(state: str, claimed: bool):
    """The UPDATE that settles a group of events alike (state, error, time, attempts), with bound parameters
    (compiled once per variant): the ids in :b_ids; it returns the ids of the rows it changed."""
    c = t.events.c
    values = {"state": state, "claimed_until": None, "last_error": bindparam("b_error")}
    if state == SENT:
        values["sent_at"] = bindparam("b_at")
    if state == PENDING:
        values["next_attempt_at"] = bindparam("b_at")
    q = update(t.events).where(c.id.in_(bindparam("b_ids", expanding=True)), c.state == DELIVERING)
    if claimed:
        q = q.where(c.attempts == bindparam("b_attempts"))
    return q.values(**values).returning(c.id)


def _settle_key(now: datetime, state: str, error: str | None, retry_at: datetime | None,
                claimed: Event | None) -> tuple:
    """(state, error text, sent or retry time, attempts the row must show): settles alike share one UPDATE."""
    return (state, error[:MAX_ERROR_TEXT] if error else None,
            None if state == FAILED else now if state == SENT else retry_at or now,
            None if claimed is None else claimed.attempts + 1)  # `claim` counted itself in the row


class Sources:
    """Workflow systems: a name each, bearer tokens of kind "source" (the secret shown once)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self.tokens = ApiTokens(db, clock=clock)

    async def add(self, name: str) -> tuple[Source, str, ApiToken]:
        """A new source and its first token: (source, secret shown once, token)."""
        name = name.strip().lower()
        if not name or len(name) > MAX_SOURCE_NAME or not name.replace("-", "").replace(".", "").isalnum() \
                or not name.isascii():
            raise InvalidInput(f"invalid source name {name!r} (ASCII letters, digits, '-' and '.', "
                               f"at most {MAX_SOURCE_NAME})")
        now = self.clock()
        async with self.db.write() as conn:  # the source and its token commit together
            if (await conn.execute(select(t.event_sources.c.id).where(t.event_sources.c.name == name))).first():
                raise AlreadyExists(f"source {name} already exists")
            res = await conn.execute(t.event_sources.insert().values(name=name, created_at=now))
            src = Source(res.inserted_primary_key[0], name, now, None)
            secret, tok = await self.tokens.create_in(conn, None, kind="source", source_id=src.id, label=name)
        return src, secret, tok

    async def new_token(self, name: str) -> tuple[Source, str, ApiToken]:
        """One more token for an active source (rotation: the old ones work until revoked); the secret shown once.

        InvalidInput for a revoked source: its tokens stay refused, so none is made (checked in the
        transaction that makes it, so a revocation racing it leaves no live token behind).
        """
        c = t.event_sources.c
        async with self.db.write() as conn:
            # FOR UPDATE (PostgreSQL; SQLite has one writer anyway): a revocation committing meanwhile is seen here.
            r = (await conn.execute(select(t.event_sources).where(c.name == name.strip().lower())
                                    .with_for_update())).first()
            if r is None:
                raise NotFound(f"no source {name}")
            src = _source(r)
            if src.revoked_at is not None:
                raise InvalidInput(f"source {src.name} is revoked: add a source under a new name")
            secret, tok = await self.tokens.create_in(conn, None, kind="source", source_id=src.id, label=src.name)
        return src, secret, tok

    async def tokens_of(self, source_id: int) -> list[ApiToken]:
        """The source's tokens, oldest first (revoked ones too)."""
        return await self.tokens.list(source_id=source_id)

    async def revoke_token(self, name: str, token_id: int) -> ApiToken:
        """Revoke one token of the source (idempotent); NotFound when the source has no such token."""
        src = await self.get(name)
        if not any(tok.id == token_id for tok in await self.tokens_of(src.id)):
            raise NotFound(f"source {src.name} has no token {token_id}")
        return await self.tokens.revoke(token_id)

    async def list(self) -> list[Source]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.event_sources).order_by(t.event_sources.c.name))).all()
        return [_source(r) for r in rows]

    async def get(self, name: str) -> Source:
        async with self.db.read() as conn:
            r = (await conn.execute(select(t.event_sources)
                                    .where(t.event_sources.c.name == name.strip().lower()))).first()
        if r is None:
            raise NotFound(f"no source {name}")
        return _source(r)

    async def by_id(self, source_id: int) -> Source:
        async with self.db.read() as conn:
            r = (await conn.execute(select(t.event_sources).where(t.event_sources.c.id == source_id))).first()
        if r is None:
            raise NotFound(f"no source with id {source_id}")
        return _source(r)

    async def revoke(self, name: str) -> Source:
        """Revoke the source and every token of it (idempotent): its posts are refused from now on."""
        src = await self.get(name)
        now = self.clock()
        async with self.db.write() as conn:
            await conn.execute(update(t.event_sources).where(t.event_sources.c.id == src.id,
                                                             t.event_sources.c.revoked_at.is_(None))
                               .values(revoked_at=now))
            await conn.execute(update(t.api_tokens).where(t.api_tokens.c.source_id == src.id,
                                                          t.api_tokens.c.revoked_at.is_(None))
                               .values(revoked_at=now))
        forget_live_tokens(self.db)
        return await self.get(name)


class EventStore:
    """The events table behind a small API; `clock` is passed in (tests move time)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow,
                 lease: timedelta = EVENT_LEASE, node: str | None = None) -> None:
        self.db = db
        self.node = node  # on PostgreSQL, new rows wake the workers of the other nodes (pgbus; None: nobody)
        self.clock = clock
        self.lease = lease
        # The batch is taken once the writer is ours (LateGroupCommitter): posts that arrive while
        # the writer is busy join the next transaction instead of queueing behind it one by one.
        self._committer: LateGroupCommitter[tuple[NewEvent, dict], tuple[Event, bool]] = LateGroupCommitter(
            db, self._insert_taken, self._answers)
        self._settler: GroupCommitter[tuple, None] = GroupCommitter(self._settle_batch)
        self.listeners: list[Callable[[int], None]] = []  # told how many new rows were committed (the worker's poke)
        # Whether n new rows should wake the other nodes' workers (PostgreSQL NOTIFY at commit); bridges.service
        # gives the worker's wants_help: a trickle is left to this node's sleeping worker. Called in the writer's thread.
        self.wake_others: Callable[[int], bool] = lambda _n: True
        self.posting = 0  # accept() calls under way in this process (posts waiting for their 202)
        self._busy_until = 0.0  # monotonic time until which the intake counts as busy
        self.unclaimed_since: float | None = None  # when the oldest event accepted here since the last claim was
        self.settle_hooks: list[SettleHook] = []  # run in a final settle's transaction (the webhook outbox)

    def _now(self) -> datetime:
        return self.clock().astimezone(timezone.utc)

    async def close(self) -> None:
        await self._committer.close()
        await self._settler.close()

    # --- accept ------------------------------------------------------------------------

    async def accept(self, events: Iterable[NewEvent]) -> list[tuple[Event, bool]]:
        """Store the events (durable when this returns): per event (the stored row, whether this call made it)."""
        self.posting += 1
        if self.posting >= BUSY_POSTS:
            self._busy_until = monotonic() + BUSY_LINGER
        try:
            now = self._now()
            out = await asyncio.gather(*(self._committer.submit((e, _row(e, now))) for e in events))
        finally:
            self.posting -= 1
        new = sum(created for _, created in out)
        if new:
            if self.unclaimed_since is None:
                self.unclaimed_since = monotonic()
            for notify in self.listeners:  # commit first, then broadcast
                notify(new)
        return list(out)

    def intake_busy(self) -> bool:
        """Whether BUSY_POSTS posts or more wait for their answer at once in this process (or did, BUSY_LINGER ago)."""
        return self.posting >= BUSY_POSTS or monotonic() < self._busy_until

    def _insert_taken(self, conn: Connection, taken: list[tuple[NewEvent, dict]]) -> tuple[dict, dict]:
        return self._insert_sync(conn, [e for e, _ in taken], [row for _, row in taken])

    @staticmethod
    def _answers(taken: list[tuple[NewEvent, dict]], result: tuple[dict, dict]) -> list[tuple[Event, bool]]:
        """Per event: the row this insert made (not read back), or the row stored before (a retried post)."""
        made, found = result
        out = []
        for e, row in taken:
            key = (e.source_id, e.ext_id)
            row_id, queue_id = made.get(key, (None, None))
            if queue_id == e.queue_id:  # this event's row
                out.append((Event(row_id, e.source_id, e.ext_id, e.type, e.item, e.urgency, e.locale, e.payload,
                                  e.fingerprint, e.recipients, e.unknown, PENDING, 0, e.queue_id, row["created_at"],
                                  None, None), True))
            else:
                out.append((found[key], False))
        return out

    def _insert_sync(self, conn: Connection, batch: list[NewEvent], rows_in: list[dict]) -> tuple[dict, dict]:
        """One INSERT .. ON CONFLICT DO NOTHING .. RETURNING for the batch; a SELECT only of the rows it did not make.

        A row was made by this batch's event when it carries that event's queue id (each NewEvent
        has a new one): of two posts of one id, here or on another node, only the stored one matches.
        """
        c = t.events.c
        q = (_INSERTS[self.db.dialect](t.events).on_conflict_do_nothing(index_elements=[c.source_id, c.ext_id])
             .returning(c.id, c.source_id, c.ext_id, c.queue_id))
        # (source id, ext id) -> (row id, queue id) of the rows this insert made
        made = {(r.source_id, r.ext_id): (r.id, r.queue_id) for r in conn.execute(q, rows_in)}
        keys = {(e.source_id, e.ext_id) for e in batch if made.get((e.source_id, e.ext_id), (0, None))[1] != e.queue_id}
        found = {}
        if keys:  # retried posts (the same id again): answer with the stored row
            rows = conn.execute(select(t.events).where(
                or_(*(and_(c.source_id == s, c.ext_id == x) for s, x in keys)))).all()
            found = {(r.source_id, r.ext_id): _event(r) for r in rows}
        if self.node and made and self.wake_others(len(made)):
            pgbus.wake_sync(conn, self.node, WAKE_TOPIC)  # delivered at commit, to the other nodes
        return made, found

    # --- the worker ----------------------------------------------------------------------

    def _due(self, now: datetime):
        c = t.events.c
        return or_(and_(c.state == PENDING, c.next_attempt_at <= now),
                   and_(c.state == DELIVERING, c.claimed_until < now))

    async def claim(self, limit: int) -> list[Event]:
        """Take the lease on up to `limit` due events (oldest first); `attempts` counts claims so far."""
        now = self._now()
        c = t.events.c
        self.unclaimed_since = None  # what was accepted before this is due to this claim

        def claim_sync(conn: Connection, _blocking) -> list:
            q = select(c.id).where(self._due(now)).order_by(c.next_attempt_at, c.id).limit(limit)
            if self.db.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True)
            ids = conn.execute(q).scalars().all()
            if not ids:
                return []
            rows = conn.execute(select(t.events).where(c.id.in_(ids)).order_by(c.id)).all()
            conn.execute(update(t.events).where(c.id.in_(ids)).values(
                state=DELIVERING, claimed_until=now + self.lease, attempts=c.attempts + 1))
            return rows
        return [_event(r) for r in await self.db.write_sync(claim_sync)]

    async def settle(self, event_id: int, state: str, *, error: str | None = None,
                     retry_at: datetime | None = None, claimed: Event | None = None) -> bool:
        """The outcome of a claim: sent, failed, or pending again at `retry_at` (durable when this returns).

        `claimed` (the claimed row): only that claim is settled (not one taken again after its
        lease lapsed), and `settle_hooks` run in the same transaction for sent and failed.
        Whether the row changed. Concurrent settles share one transaction (group commit): with
        synchronous commits a transaction per event would bound the worker at the disk's syncs per second.
        """
        if state not in (SENT, FAILED, PENDING):
            raise InvalidInput(f"cannot settle an event as {state}")
        return await self._settler.submit((event_id, state, error, retry_at, claimed))

    async def _settle_batch(self, batch: list[tuple[int, str, str | None, datetime | None, Event | None]]) -> list[bool]:
        return await self.db.write_sync(lambda conn, _blocking: self._settle_sync(conn, batch))

    def _settle_sync(self, conn: Connection,
                     batch: list[tuple[int, str, str | None, datetime | None, Event | None]]) -> list[bool]:
        """One UPDATE per group of settles alike (a round's deliveries: one group), not one per event.

        An UPDATE a row cost ~0.1 ms of the shared writer's time (a statement, a thread hand-off):
        the settles held it ~13 % of a sustained flow. A row's change is read from RETURNING.
        An id settled twice in one batch (not done by the worker) is settled once, then tried again
        on its own, as two transactions in turn would: the second finds it settled already.
        """
        now = self._now()
        groups: dict[tuple, list[int]] = {}
        again: list[int] = []
        seen: set[int] = set()
        for i, (event_id, state, error, retry_at, claimed) in enumerate(batch):
            if event_id in seen:
                again.append(i)
                continue
            seen.add(event_id)
            groups.setdefault(_settle_key(now, state, error, retry_at, claimed), []).append(i)
        done = [False] * len(batch)

        def run(key: tuple, members: list[int]) -> None:
            state, error, at, attempts = key
            params: dict = {"b_ids": [batch[i][0] for i in members], "b_error": error}
            if at is not None:
                params["b_at"] = at
            if attempts is not None:
                params["b_attempts"] = attempts
            changed = set(conn.execute(_settle_statement(state, attempts is not None), params).scalars())
            for i in members:
                done[i] = batch[i][0] in changed
        for key, members in groups.items():
            run(key, members)
        for i in again:
            run(_settle_key(now, *batch[i][1:]), [i])
        final = [(claimed, state, error) for changed, (_id, state, error, _at, claimed) in zip(done, batch)
                 if changed and claimed is not None and state in (SENT, FAILED)]
        if final:
            for hook in self.settle_hooks:
                hook(conn, final)
        return done

    async def next_due(self) -> datetime | None:
        return (await self.next_times())[0]

    async def next_times(self) -> tuple[datetime | None, datetime | None]:
        """(when an event is next due: a retry or a lapsing lease; when a digest is next due), in one read:
        a worker reads both before every sleep, and each read is a hand-off to a reader's thread."""
        c, d = t.events.c, t.event_digest_items.c

        def due_sync(conn: Connection) -> tuple:
            return (conn.execute(select(func.min(c.next_attempt_at)).where(c.state == PENDING)).scalar(),
                    conn.execute(select(func.min(c.claimed_until)).where(c.state == DELIVERING)).scalar(),
                    conn.execute(select(func.min(d.due_at)).where(d.sent_at.is_(None))).scalar())
        retry, lease, digest = await self.db.read_sync(due_sync)
        due = [_aware(x) for x in (retry, lease) if x is not None]
        return (min(due) if due else None), _maybe(digest)

    # --- administrators ------------------------------------------------------------------

    async def get(self, event_id: int) -> Event:
        async with self.db.read() as conn:
            r = (await conn.execute(select(t.events).where(t.events.c.id == event_id))).first()
        if r is None:
            raise NotFound(f"no event {event_id}")
        return _event(r)

    async def find(self, source_id: int, ext_id: str) -> Event | None:
        c = t.events.c
        async with self.db.read() as conn:
            r = (await conn.execute(select(t.events).where(c.source_id == source_id, c.ext_id == ext_id))).first()
        return None if r is None else _event(r)

    async def list(self, *, source_id: int | None = None, state: str | None = None,
                   limit: int = 100) -> list[Event]:
        """The newest events first, at most `limit`."""
        c = t.events.c
        q = select(t.events).order_by(c.id.desc()).limit(limit)
        if source_id is not None:
            q = q.where(c.source_id == source_id)
        if state is not None:
            q = q.where(c.state == state)
        async with self.db.read() as conn:
            return [_event(r) for r in (await conn.execute(q)).all()]

    async def resend(self, event_id: int, queue_id: str) -> Event:
        """Deliver a settled event again under a new queue id (a new message to everyone it reached)."""
        now = self._now()
        async with self.db.write() as conn:
            res = await conn.execute(update(t.events).where(t.events.c.id == event_id,
                                                            t.events.c.state.in_((SENT, FAILED)))
                                     .values(state=PENDING, next_attempt_at=now, attempts=0, claimed_until=None,
                                             queue_id=queue_id, sent_at=None, last_error=None))
        if res.rowcount != 1:
            ev = await self.get(event_id)
            raise InvalidInput(f"event {event_id} is {ev.state}: only a sent or failed event is resent")
        for notify in self.listeners:
            notify(1)
        return await self.get(event_id)

    async def counts(self) -> dict[str, int]:
        c = t.events.c
        async with self.db.read() as conn:
            rows = (await conn.execute(select(c.state, func.count()).group_by(c.state))).all()
        return {s: n for s, n in rows}

    # --- per-person preferences and digests ----------------------------------------------

    async def preferences(self, account_id: int) -> dict[str, str]:
        c = t.event_preferences.c
        async with self.db.read() as conn:
            rows = (await conn.execute(select(c.type, c.mode).where(c.account_id == account_id))).all()
        return {r.type: r.mode for r in rows}

    async def modes(self, account_ids: Iterable[int], type_: str) -> dict[int, str]:
        """The digest mode ("hourly"/"daily") of those of these accounts that chose one for this type."""
        return {a: m for (a, _), m in (await self.digest_modes(account_ids, (type_,))).items()}

    async def digest_modes(self, account_ids: Iterable[int], types: Iterable[str]) -> dict[tuple[int, str], str]:
        """(account id, event type) -> "hourly"/"daily" for the pairs among these that chose a digest.

        The worker asks once per round for every event it claimed: one read, not one per event.
        """
        ids, kinds = sorted(set(account_ids)), sorted(set(types))
        if not ids or not kinds:
            return {}
        c = t.event_preferences.c

        def read(conn: Connection) -> dict[tuple[int, str], str]:
            out = {}
            for k in range(0, len(ids), MODES_CHUNK):
                q = select(c.account_id, c.type, c.mode).where(c.type.in_(kinds),
                                                               c.account_id.in_(ids[k:k + MODES_CHUNK]))
                out.update({(r.account_id, r.type): r.mode for r in conn.execute(q)})
            return out
        return await self.db.read_sync(read)

    async def set_preferences(self, account_id: int, prefs: dict[str, str]) -> dict[str, str]:
        """Set the mode per event type ("immediate" removes the row)."""
        for type_, mode in prefs.items():
            if mode not in MODES:
                raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
        c = t.event_preferences.c
        async with self.db.write() as conn:
            for type_, mode in prefs.items():
                await conn.execute(delete(t.event_preferences).where(c.account_id == account_id, c.type == type_))
                if mode != "immediate":
                    await conn.execute(t.event_preferences.insert().values(account_id=account_id, type=type_,
                                                                           mode=mode))
        return await self.preferences(account_id)

    async def add_digest_items(self, event_id: int, due: dict[int, datetime]) -> None:
        """Hold the event for these accounts' digests (account id -> when its digest is due); idempotent."""
        if not due:
            return
        c = t.event_digest_items.c
        ins = _INSERTS[self.db.dialect]
        async with self.db.write() as conn:
            for account_id, when in due.items():
                await conn.execute(ins(t.event_digest_items).values(
                    event_id=event_id, account_id=account_id, due_at=when.astimezone(timezone.utc))
                    .on_conflict_do_nothing(index_elements=[c.event_id, c.account_id]))

    async def due_digests(self, limit_people: int, per_person: int) -> dict[int, list[DigestItem]]:
        """Claim, per account whose digest is due now, its items due by now, by type (at most `per_person`).

        The claim is a lease in `due_at` (no other column): the claimed items are due again only
        at now + lease, so no other node takes them while this one sends the digest; if it dies,
        they are taken again after the lease (and the digest's Message-ID is searched for first).
        On PostgreSQL a node takes a person only with that person's advisory lock (held to its
        commit; a person another node holds is left for it), then reads the items still due: rows
        are locked one by one as a query reads them, so `FOR UPDATE SKIP LOCKED` alone let two
        nodes claiming at once each take a part of one person's items and send two digests
        (tests/store/test_digest_nodes.py, seen under load). SQLite's write transaction is exclusive.
        """
        now = self._now()
        d, e = t.event_digest_items.c, t.events.c
        out: dict[int, list[DigestItem]] = {}
        due_people = (select(d.account_id).where(d.sent_at.is_(None), d.due_at <= now)
                      .group_by(d.account_id).limit(limit_people))
        # Most calls find none: no write transaction for them (one read, in the reader's thread on SQLite).
        if await self.db.read_sync(lambda conn: conn.execute(due_people).first()) is None:
            return out
        async with self.db.write() as conn:
            people = (await conn.execute(due_people)).scalars().all()
            for pid in people:
                if self.db.dialect == "postgresql" and not (await conn.execute(
                        text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": DIGEST_LOCK_BASE + pid})).scalar():
                    continue  # another node is claiming this person's items right now
                q = (select(d.id.label("item_id"), t.events)
                     .select_from(t.event_digest_items.join(t.events, e.id == d.event_id))
                     .where(d.account_id == pid, d.sent_at.is_(None), d.due_at <= now)
                     .order_by(e.type, e.id).limit(per_person))
                if self.db.dialect == "postgresql":
                    q = q.with_for_update(of=t.event_digest_items)
                rows = (await conn.execute(q)).all()
                if rows:
                    await conn.execute(update(t.event_digest_items).where(d.id.in_([r.item_id for r in rows]))
                                       .values(due_at=now + self.lease))
                    out[pid] = [DigestItem(r.item_id, pid, _event(r)) for r in rows]
        return out

    async def next_digest(self) -> datetime | None:
        d = t.event_digest_items.c
        q = select(func.min(d.due_at)).where(d.sent_at.is_(None))
        return _maybe(await self.db.read_sync(lambda conn: conn.execute(q).scalar()))

    async def digest_sent(self, item_ids: Iterable[int]) -> None:
        ids = list(item_ids)
        if ids:
            async with self.db.write() as conn:
                await conn.execute(update(t.event_digest_items).where(t.event_digest_items.c.id.in_(ids))
                                   .values(sent_at=self._now()))
