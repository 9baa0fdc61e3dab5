"""Read status inside the organisation: when each colleague's copy of a sent message was delivered, first read, recalled.

Implementation notes (invariants):
- The rows live in the central database (schema.sent_messages, sent_copies):
  recipients' mail may be in several partitions (department databases, year
  archives), but the sender's side must find every copy's status with one
  query, and recall must decide for all copies in one place.
- Each copy written into a colleague's folder carries its sent_copies id in
  messages.track_id, committed with the message row (no window in which the
  copy exists untracked). COPY and MOVE carry it to the new row, so a copy
  moved to another folder (or an archive partition) is still found.
- The store records a read where flags are set (Store.store_flags), from the
  track ids its UPDATE returns with the flags: a STORE on untracked messages
  costs no statement more; on tracked ones one UPDATE per MARK_CHUNK ids.
  "First read" is the first time \\Seen is committed on a copy (IMAP STORE,
  FETCH BODY[] without PEEK, the webmail opening it: they all call store_flags).
- Recall decides atomically on the central rows: one transaction (rows locked
  FOR UPDATE on PostgreSQL, the single writer on SQLite) refuses if any copy
  has first_read_at, else marks them all recalled. The copies are then deleted
  through the store (EXPUNGE for IMAP and IDLE, events for the webmail). A read
  racing the recall is serialised with the delete by the copy's own partition:
  if \\Seen committed first, the delete returns the copy with \\Seen and the
  recall records the read and reports it to the sender (RecallResult.read_meanwhile);
  if the delete committed first, the read finds no message. So a copy is never
  both read and removed without the sender being told.
- A copy whose first delivery failed temporarily keeps its row, not delivered yet (the sender
  sees it so); the queue worker's retry finds it by the message's queue id (`pending_copy`),
  writes the copy with it and records the delivery then. A permanent failure removes the row.
- Nothing here touches the message bytes: no header is added, so nothing of it
  can leave the organisation with a remote copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, case, insert, select, update

from . import schema as t
from .db import Database
from .errors import NotFound, StoreError
from .model import Account

if TYPE_CHECKING:  # the store calls us; recall calls the store back
    from .store import Store

MARK_CHUNK = 500  # tracked ids per UPDATE when one STORE marks many copies read (bound parameters per statement)
MAX_SUBJECT = 255  # characters of the subject kept for the status page
MAX_MESSAGE_ID = 998  # RFC 5322 §2.1.1 line length: a longer Message-ID is not tracked


class AlreadyRead(StoreError):
    """Recall refused: these recipients have read the message (nothing was removed)."""

    def __init__(self, addresses: Sequence[str]) -> None:
        super().__init__("already read by " + ", ".join(addresses))
        self.addresses = tuple(addresses)


@dataclass(frozen=True)
class CopyStatus:
    address: str
    delivered_at: datetime | None
    first_read_at: datetime | None
    recalled_at: datetime | None


@dataclass(frozen=True)
class SentStatus:
    id: int
    message_id: str
    subject: str
    sent_at: datetime
    recalled_at: datetime | None
    copies: tuple[CopyStatus, ...]

    @property
    def read_by(self) -> tuple[str, ...]:
        return tuple(c.address for c in self.copies if c.first_read_at is not None)

    @property
    def recallable(self) -> bool:
        return self.recalled_at is None and not self.read_by and any(c.delivered_at for c in self.copies)


@dataclass(frozen=True)
class RecallResult:
    removed: int  # copies deleted, over all recipients and folders
    read_meanwhile: tuple[str, ...]  # recipients whose \Seen committed between the decision and the delete


def _aware(d: datetime | None) -> datetime | None:
    from datetime import timezone
    if d is None:
        return None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def normalise_message_id(value: str | None) -> str | None:
    """The Message-ID as compared between the submitted message and the sender's Sent copy."""
    v = (value or "").strip()
    return v if v and len(v) <= MAX_MESSAGE_ID else None


class ReadStatus:
    """The central rows of sent messages and their tracked copies."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self, sender: Account, message_id: str, queue_id: str, subject: str,
                    recipients: Sequence[Account], when: datetime) -> dict[int, int]:
        """Before delivery: a sent row and one copy row per recipient; returns account id -> track id."""
        async with self.db.write() as conn:
            sid = (await conn.execute(insert(t.sent_messages).values(
                sender_id=sender.id, message_id=message_id, queue_id=queue_id, subject=subject[:MAX_SUBJECT],
                sent_at=when))).inserted_primary_key[0]
            rows = (await conn.execute(
                insert(t.sent_copies).returning(t.sent_copies.c.id, t.sent_copies.c.account_id,
                                                sort_by_parameter_order=True),
                [{"sent_id": sid, "account_id": a.id, "address": a.address} for a in recipients])).all()
        return {r.account_id: r.id for r in rows}

    async def delivered(self, written: Sequence[int], not_written: Sequence[int], when: datetime) -> None:
        """After the delivery committed: the copies written get their time; `not_written` (refused for good) are not tracked."""
        c = t.sent_copies.c
        async with self.db.write() as conn:
            if written:  # a read may have been recorded already (the copy was readable at commit): not after it
                await conn.execute(update(t.sent_copies).where(c.id.in_(written)).values(delivered_at=case(
                    (and_(c.first_read_at.is_not(None), c.first_read_at < when), c.first_read_at), else_=when)))
            if not_written:
                await conn.execute(t.sent_copies.delete().where(c.id.in_(not_written)))

    async def pending_copy(self, queue_id: str, account_id: int) -> int | None:
        """The read-status row of this account's copy of the message queued as `queue_id`, still to be delivered."""
        m, c = t.sent_messages.c, t.sent_copies.c
        async with self.db.read() as conn:
            return (await conn.execute(
                select(c.id).select_from(t.sent_copies.join(t.sent_messages, m.id == c.sent_id))
                .where(m.queue_id == queue_id, c.account_id == account_id, c.delivered_at.is_(None),
                       c.recalled_at.is_(None)).limit(1))).scalar()

    async def mark_read(self, track_ids: Sequence[int], when: datetime) -> None:
        """\\Seen was committed on these copies: the first time is kept (one UPDATE per MARK_CHUNK ids)."""
        ids = sorted(set(track_ids))
        c = t.sent_copies.c
        async with self.db.write() as conn:
            for k in range(0, len(ids), MARK_CHUNK):
                await conn.execute(update(t.sent_copies).where(and_(
                    c.id.in_(ids[k:k + MARK_CHUNK]), c.first_read_at.is_(None))).values(first_read_at=when))

    async def find(self, sender: Account, message_id: str | None) -> int | None:
        """The latest tracked sending of this Message-ID by this sender, if any."""
        mid = normalise_message_id(message_id)
        if mid is None:
            return None
        s = t.sent_messages.c
        async with self.db.read() as conn:
            return (await conn.execute(select(s.id).where(and_(s.sender_id == sender.id, s.message_id == mid))
                                       .order_by(s.id.desc()).limit(1))).scalar()

    async def status(self, sender: Account, sent_id: int) -> SentStatus:
        """The status of one sent message; NotFound unless `sender` sent it."""
        s, c = t.sent_messages.c, t.sent_copies.c
        async with self.db.read() as conn:
            row = (await conn.execute(select(t.sent_messages).where(and_(s.id == sent_id,
                                                                        s.sender_id == sender.id)))).first()
            if row is None:
                raise NotFound("no such sent message")
            copies = (await conn.execute(select(t.sent_copies).where(c.sent_id == sent_id)
                                         .order_by(c.address, c.id))).all()
        return SentStatus(row.id, row.message_id, row.subject, _aware(row.sent_at), _aware(row.recalled_at),
                          tuple(CopyStatus(r.address, _aware(r.delivered_at), _aware(r.first_read_at),
                                           _aware(r.recalled_at)) for r in copies))

    async def _claim_recall(self, sender: Account, sent_id: int, when: datetime) -> list[tuple[int, int]]:
        """The atomic decision: refuse if any copy was read, else mark all recalled; (copy id, account id)."""
        s, c = t.sent_messages.c, t.sent_copies.c
        async with self.db.write() as conn:
            q = select(s.id, s.recalled_at).where(and_(s.id == sent_id, s.sender_id == sender.id))
            cq = select(c.id, c.account_id, c.address, c.first_read_at).where(c.sent_id == sent_id).order_by(c.id)
            if conn.dialect.name == "postgresql":
                q, cq = q.with_for_update(), cq.with_for_update()
            row = (await conn.execute(q)).first()
            if row is None:
                raise NotFound("no such sent message")
            copies = (await conn.execute(cq)).all()
            read = [r.address for r in copies if r.first_read_at is not None]
            if read:
                raise AlreadyRead(read)
            if row.recalled_at is None:
                await conn.execute(update(t.sent_messages).where(s.id == sent_id).values(recalled_at=when))
                await conn.execute(update(t.sent_copies).where(c.sent_id == sent_id).values(recalled_at=when))
        return [(r.id, r.account_id) for r in copies]

    async def recall(self, store: Store, sender: Account, sent_id: int) -> RecallResult:
        """Remove every colleague's copy of a message nobody has read yet (see the module notes)."""
        when = store.clock()
        copies = await self._claim_recall(sender, sent_id, when)
        removed, read_meanwhile = 0, []
        for copy_id, account_id in copies:
            try:
                account = await store.directory.account_by_id(account_id)
            except NotFound:
                continue
            n, seen = await store.expunge_tracked(account, copy_id)
            removed += n
            if seen:
                read_meanwhile.append(account.address)
                await self.mark_read([copy_id], when)
        await store.directory.audit(sender.address, "message.recall", str(sent_id), removed=removed,
                                    read_meanwhile=read_meanwhile)
        return RecallResult(removed, tuple(read_meanwhile))
