"""Mail held for approval because its label does not allow some recipients (issue 13), in the central database."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update

from . import schema as t
from .db import Database
from .directory import utcnow
from .errors import InvalidInput, NotFound
from .websessions import _aware

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
MAX_LISTED = 200  # held messages one page lists at most
MAX_REASON = 1000  # characters of a rejection reason kept
MAX_ROUTED = 10_000  # pending holds whose approver is worked out at once (Approvals: the leader now)


@dataclass(frozen=True)
class Held:
    id: int
    queue_id: str
    mail_from: str
    submitter: str | None
    label: str
    subject: str
    created_at: datetime
    state: str
    recipients: tuple[str, ...]
    decided_by: str | None = None
    reason: str | None = None
    approver: str | None = None  # the leader asked when it was held (mailboxes.leaders); None: the office

    @property
    def sender(self) -> str:
        """Who sent it: the logged-in submitter, else the reverse-path (a trusted service's mail)."""
        return self.submitter or self.mail_from


class HeldMail:
    """Held messages and their held recipients; a decision is taken once, atomically."""

    def __init__(self, db: Database, clock=utcnow) -> None:
        self.db = db
        self.clock = clock

    async def hold(self, *, queue_id: str, mail_from: str, submitter: str | None, label: str, subject: str,
                   data: bytes, recipients: tuple[str, ...], approver: str | None = None) -> int:
        async with self.db.write() as conn:
            held_id = (await conn.execute(insert(t.held_messages).values(
                queue_id=queue_id, mail_from=mail_from, submitter=submitter, label=label, subject=subject[:300],
                data=data, created_at=self.clock(), state=PENDING, approver=approver)
                .returning(t.held_messages.c.id))).scalar_one()
            await conn.execute(insert(t.held_recipients), [{"held_id": held_id, "rcpt": r} for r in recipients])
        return held_id

    async def get(self, held_id: int) -> Held:
        async with self.db.read() as conn:
            row = (await conn.execute(select(t.held_messages).where(t.held_messages.c.id == held_id))).first()
            if row is None:
                raise NotFound(f"no held message {held_id}")
            rcpts = (await conn.execute(select(t.held_recipients.c.rcpt).where(
                t.held_recipients.c.held_id == held_id).order_by(t.held_recipients.c.id))).scalars().all()
        return _held(row, tuple(rcpts))

    async def data(self, held_id: int) -> bytes:
        async with self.db.read() as conn:
            data = (await conn.execute(select(t.held_messages.c.data).where(
                t.held_messages.c.id == held_id))).scalar_one_or_none()
        if data is None:
            raise NotFound(f"no held message {held_id}")
        return bytes(data)

    async def pending(self, limit: int = MAX_LISTED, *, approver: str | None = None,
                      not_from: str | None = None, ids: Collection[int] | None = None) -> list[Held]:
        """The oldest pending holds; with `approver`, only those that leader was asked to decide;
        with `not_from`, none that this address sent (nobody approves their own mail); with `ids`,
        only those."""
        if ids is not None:
            ids = sorted(ids)[:min(limit, MAX_LISTED)]
            if not ids:
                return []
        async with self.db.read() as conn:
            q = self._pending(approver, not_from, select(t.held_messages.c.id))
            if ids is not None:
                q = q.where(t.held_messages.c.id.in_(ids))
            rows = (await conn.execute(q.order_by(t.held_messages.c.id).limit(min(limit, MAX_LISTED)))).all()
        return [await self.get(r.id) for r in rows]

    async def routes(self) -> list[tuple[int, str, int | None, str | None]]:
        """(id, sender, the department the sender's account is in now, the leader asked) of the oldest
        MAX_ROUTED pending holds."""
        hm, acc = t.held_messages.c, t.accounts.c
        sender = func.coalesce(hm.submitter, hm.mail_from)
        q = (select(hm.id, sender.label("sender"), acc.department_id, hm.approver)
             .select_from(t.held_messages.outerjoin(t.accounts, acc.address == func.lower(sender)))
             .where(hm.state == PENDING).order_by(hm.id).limit(MAX_ROUTED))
        async with self.db.read() as conn:
            return [(r.id, r.sender, r.department_id, r.approver) for r in (await conn.execute(q)).all()]

    async def reroute(self, held_id: int, asked: str | None, now: str | None) -> bool:
        """Record that `now` (None: the office) is asked instead of `asked`, if the hold still waits and still
        names `asked`: of several nodes making the same change, one finds it changed (and mails the request)."""
        hm = t.held_messages.c
        async with self.db.write() as conn:
            return (await conn.execute(update(t.held_messages).where(
                hm.id == held_id, hm.state == PENDING, hm.approver.is_not_distinct_from(asked))
                .values(approver=now))).rowcount == 1

    async def count_pending(self, *, approver: str | None = None, not_from: str | None = None) -> int:
        async with self.db.read() as conn:
            return (await conn.execute(self._pending(approver, not_from, select(func.count()).select_from(
                t.held_messages)))).scalar_one()

    @staticmethod
    def _pending(approver: str | None, not_from: str | None, query):
        query = query.where(t.held_messages.c.state == PENDING)
        if not_from is not None:
            query = query.where(func.coalesce(t.held_messages.c.submitter, t.held_messages.c.mail_from) != not_from)
        return query if approver is None else query.where(t.held_messages.c.approver == approver)

    async def decide(self, held_id: int, state: str, by: str, reason: str = "") -> Held:
        """Mark a pending hold approved or rejected; InvalidInput when it was decided already."""
        if state not in (APPROVED, REJECTED):
            raise InvalidInput(f"not a decision: {state}")
        async with self.db.write() as conn:
            done = (await conn.execute(update(t.held_messages).where(
                t.held_messages.c.id == held_id, t.held_messages.c.state == PENDING).values(
                state=state, decided_by=by, decided_at=self.clock(), reason=reason[:MAX_REASON] or None))).rowcount
        if not done:
            await self.get(held_id)  # NotFound when there is no such hold
            raise InvalidInput(f"held message {held_id} was decided already")
        return await self.get(held_id)


def _held(row, rcpts: tuple[str, ...]) -> Held:
    return Held(row.id, row.queue_id, row.mail_from, row.submitter, row.label, row.subject,
                _aware(row.created_at), row.state, rcpts, row.decided_by, row.reason, row.approver)


class DepartmentLabels:
    """The default label a department gives its mail (None: the global default)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def set(self, code: str, label: str | None) -> None:
        async with self.db.write() as conn:
            done = (await conn.execute(update(t.departments).where(t.departments.c.code == code.strip().lower())
                                       .values(label=label or None))).rowcount
        if not done:
            raise NotFound(f"no department {code}")

    async def of(self, department_id: int) -> str | None:
        async with self.db.read() as conn:
            return (await conn.execute(select(t.departments.c.label).where(
                t.departments.c.id == department_id))).scalar_one_or_none()
