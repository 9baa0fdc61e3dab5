"""Official documents in the store: partner organisations, dispatched documents and their tracking, registration of received ones, quarantine.

Implementation notes
- The bridge (bridges/) parses and verifies manifests; this module keeps rows and their rules:
  a document number once per issuing organ and year (documents_out's unique key, so two
  dispatches racing on two nodes cannot both pass); a received document registered once per
  (partner, issuing organ, number), however often it arrives; registration numbers per year
  without gaps or duplicates (the highest + 1 inside the registering transaction, the unique
  key on (year, seq) turning a race on PostgreSQL into a retry).
- Tracking times are set once (the first receipt wins; a repeated receipt changes nothing),
  so receipts may arrive twice or out of order.
- `report(conn, kind, payload)`, when given, is called inside the transaction of each new step
  (registered and signed here; delivered, registered and signed for a recipient at the city):
  the webhook outbox records its callback with the change, so neither is kept without the other.
  `reported()`, when given, is called after that transaction commits (commit first, then tell):
  the server wakes its webhook sender with it, which would otherwise find the callback at its next poll.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema as t
from .addresses import normalise_address
from .db import Database
from .directory import utcnow
from .errors import AlreadyExists, InvalidInput, NotFound
from .mailsettings import OOO_ZONE as LOCAL_ZONE  # China Standard Time: the bureau's calendar year
from .websessions import _aware

# The documents account's register folders (bridges/intake.py files into them): records, not mail.
INCOMING = "收文"  # registered documents; shared with the registrars
RECEIPTS = "回执"  # receipts from partners, after the tracker has them


def register_folders(address: str) -> frozenset[tuple[str, str]]:
    """(documents account, folder) of the register folders: what retention never deletes or moves.

    A registered document is served from its copy in 收文 (its files, the 签收 page), and the
    register is kept whole (its registrars may not delete there either): a "delete after N days"
    policy for other folders must not reach it. `address`: [documents] address ("" for none).
    """
    return frozenset((normalise_address(address), name) for name in (INCOMING, RECEIPTS)) if address else frozenset()


TRACK_EVENTS = ("delivered", "registered", "signed")
URGENT_ORDER = ("特急", "加急")  # GB/T 9704-2012 紧急程度, most urgent first  # from receipts; sent/failed come from the queue
DEFAULT_REGISTRATION_PATTERN = "收〔{year}〕{seq}号"
MAX_QUARANTINE_BYTES = 60 << 20  # a quarantined message is kept whole up to this size, else cut (and said so)
REGISTER_RETRIES = 40  # concurrent registrations racing for one number (PostgreSQL, several nodes)


Report = Callable[[AsyncConnection, str, dict], Awaitable[object]]  # (conn, "document.signed", payload)


def _opt(d: datetime | None) -> datetime | None:
    return None if d is None else _aware(d)


@dataclass(frozen=True)
class Partner:
    org: str
    name: str
    domain: str
    address: str
    created_at: datetime


@dataclass(frozen=True)
class Tracking:
    """One recipient organisation of a dispatched document, with the time of each step (None: not yet)."""

    document_id: int
    number: str
    issuing_organ: str
    title: str
    urgency: str
    org: str
    message_id: str
    queued_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None
    failure: str
    delivered_at: datetime | None
    registered_at: datetime | None
    signed_at: datetime | None
    registration_number: str
    signed_by: str

    @property
    def state(self) -> str:
        for name in ("signed", "registered", "delivered"):
            if getattr(self, f"{name}_at") is not None:
                return name
        if self.failed_at is not None:
            return "failed"
        return "sent" if self.sent_at is not None else "queued"


@dataclass(frozen=True)
class Registration:
    """A received document as registered here (收文)."""

    id: int
    partner_org: str
    issuing_organ: str
    number: str
    title: str
    urgency: str
    registration_number: str
    manifest: str
    message_id: str
    received_at: datetime
    signed_at: datetime | None
    signed_by: str


def _tracking(x) -> Tracking:
    return Tracking(x.id, x.number, x.issuing_organ, x.title, x.urgency, x.org, x.message_id, _aware(x.queued_at),
                    _opt(x.sent_at), _opt(x.failed_at), x.failure, _opt(x.delivered_at), _opt(x.registered_at),
                    _opt(x.signed_at), x.registration_number, x.signed_by)


def _registration(r) -> Registration:
    return Registration(r.id, r.partner_org, r.issuing_organ, r.number, r.title, r.urgency, r.registration_number,
                        r.manifest, r.message_id, _aware(r.received_at), _opt(r.signed_at), r.signed_by)


class Documents:
    """The documents tables behind a small API; `clock` is passed in (tests move time)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow,
                 registration_pattern: str = DEFAULT_REGISTRATION_PATTERN, report: Report | None = None,
                 reported: Callable[[], None] | None = None) -> None:
        check_pattern(registration_pattern)
        self.report = report
        self.reported = reported
        self.db = db
        self.clock = clock
        self.pattern = registration_pattern

    # --- partners -------------------------------------------------------------------------------
    async def add_partner(self, org: str, domain: str, *, name: str = "", address: str = "") -> Partner:
        domain = domain.strip().lower().rstrip(".")
        if not org or len(org) > 64 or not all(c.isalnum() or c in "._-" for c in org) or not org.isascii():
            raise InvalidInput("an organisation code is letters, digits, '.', '_' or '-' (at most 64)")
        if not domain or "." not in domain or "@" in domain or len(domain) > 255:
            raise InvalidInput(f"{domain!r} is not a domain name")
        address = address or f"documents@{domain}"
        now = self.clock()
        try:
            async with self.db.write() as conn:
                await conn.execute(insert(t.partners).values(org=org, name=name, domain=domain, address=address,
                                                             created_at=now))
        except IntegrityError:
            raise AlreadyExists(f"partner {org} exists") from None
        return Partner(org, name, domain, address, now)

    async def partners(self) -> list[Partner]:
        c = t.partners.c
        async with self.db.read() as conn:
            rows = (await conn.execute(select(c.org, c.name, c.domain, c.address, c.created_at).order_by(c.org))).all()
        return [Partner(r.org, r.name, r.domain, r.address, _aware(r.created_at)) for r in rows]

    async def partner(self, org: str | None = None, *, domain: str | None = None) -> Partner:
        """The partner with this code, or the one whose signing domain this is; NotFound otherwise."""
        c = t.partners.c
        q = select(c.org, c.name, c.domain, c.address, c.created_at)
        q = q.where(c.org == org) if org is not None else q.where(c.domain == (domain or "").lower().rstrip("."))
        async with self.db.read() as conn:
            r = (await conn.execute(q.order_by(c.id).limit(1))).first()
        if r is None:
            raise NotFound(f"no partner organisation {org or domain}")
        return Partner(r.org, r.name, r.domain, r.address, _aware(r.created_at))

    async def remove_partner(self, org: str) -> None:
        async with self.db.write() as conn:
            n = (await conn.execute(delete(t.partners).where(t.partners.c.org == org))).rowcount
        if not n:
            raise NotFound(f"no partner organisation {org}")

    # --- dispatch (city side) -------------------------------------------------------------------
    async def record_dispatch(self, *, issuing_organ: str, year: int, number: str, title: str, urgency: str,
                              manifest: str, sender: str, recipients: dict[str, tuple[str, str]]) -> int:
        """Record a dispatched document and its recipients ({org: (Message-ID, queue id)}); AlreadyExists for a used number."""
        now = self.clock()
        try:
            async with self.db.write() as conn:
                res = await conn.execute(insert(t.documents_out).values(
                    issuing_organ=issuing_organ, year=year, number=number, title=title, urgency=urgency,
                    manifest=manifest, sender=sender, created_at=now))
                doc_id = res.inserted_primary_key[0]
                if recipients:
                    await conn.execute(insert(t.document_recipients), [
                        {"document_id": doc_id, "org": org, "message_id": mid, "queue_id": qid, "queued_at": now}
                        for org, (mid, qid) in recipients.items()])
        except IntegrityError:
            raise AlreadyExists(f"{issuing_organ} has already dispatched {number}") from None
        return doc_id

    async def release(self, document_id: int) -> None:
        """Forget a dispatch none of whose messages was accepted, so that its number may be used again."""
        async with self.db.write() as conn:
            await conn.execute(delete(t.document_recipients).where(t.document_recipients.c.document_id == document_id))
            await conn.execute(delete(t.documents_out).where(t.documents_out.c.id == document_id))

    async def dispatched(self, issuing_organ: str, year: int, number: str) -> bool:
        c = t.documents_out.c
        async with self.db.read() as conn:
            return (await conn.execute(select(c.id).where(c.issuing_organ == issuing_organ, c.year == year,
                                                          c.number == number))).first() is not None

    async def track(self, number: str, org: str, event: str, *, at: datetime | None = None,
                    registration_number: str = "", signed_by: str = "", issuing_organ: str | None = None) -> bool:
        """Record a step for (document, recipient organisation); True when it was new (a repeat changes nothing)."""
        if event not in TRACK_EVENTS:
            raise InvalidInput(f"unknown tracking event {event!r}")
        d, r = t.documents_out.c, t.document_recipients.c
        col = getattr(r, f"{event}_at")
        values: dict = {f"{event}_at": at or self.clock()}
        if event == "registered" and registration_number:
            values["registration_number"] = registration_number
        if event == "signed" and signed_by:
            values["signed_by"] = signed_by
        doc_q = select(d.id).where(d.number == number)
        if issuing_organ is not None:
            doc_q = doc_q.where(d.issuing_organ == issuing_organ)
        async with self.db.write() as conn:
            ids = [row.id for row in (await conn.execute(doc_q)).all()]
            if not ids:
                raise NotFound(f"no dispatched document {number}")
            n = (await conn.execute(update(t.document_recipients).where(
                r.document_id.in_(ids), r.org == org, col.is_(None)).values(**values))).rowcount
            told = bool(n) and self.report is not None
            if told:
                organ = issuing_organ or (await conn.execute(select(d.issuing_organ).where(d.id == ids[0]))).scalar()
                await self.report(conn, f"document.{event}", {
                    "number": number, "issuing_organ": organ, "org": org, "at": _iso(values[f"{event}_at"]),
                    **({"registration_number": registration_number} if event != "delivered" else {}),
                    **({"signed_by": signed_by} if event == "signed" else {})})
        self._announce(told)
        return bool(n)

    def _announce(self, told: bool) -> None:
        """After the commit of a transaction that reported a step: tell `reported`."""
        if told and self.reported is not None:
            self.reported()

    async def claim_reminders(self, after: dict[str, timedelta], *, limit: int = 100) -> list[tuple[Tracking, str]]:
        """Recipients of urgent documents not signed for within `after[urgency]`: each claimed once, ever.

        (its tracking, the document's sender) for every recipient this call claimed; `reminded_at`
        is set in the same transaction (and `report` told), so of several nodes only one claims a row.
        """
        d, r = t.documents_out.c, t.document_recipients.c
        now = self.clock()
        cols = (d.id, d.number, d.issuing_organ, d.title, d.urgency, d.sender, r.org, r.message_id, r.queued_at,
                r.sent_at, r.failed_at, r.failure, r.delivered_at, r.registered_at, r.signed_at,
                r.registration_number, r.signed_by)
        out: list[tuple[Tracking, str]] = []
        async with self.db.write() as conn:
            for urgency, wait in after.items():
                if wait <= timedelta(0):
                    continue
                rows = (await conn.execute(
                    select(*cols).join_from(t.documents_out, t.document_recipients, d.id == r.document_id)
                    .where(d.urgency == urgency, r.queued_at <= now - wait, r.signed_at.is_(None),
                           r.reminded_at.is_(None)).order_by(r.queued_at).limit(limit - len(out)))).all()
                for x in rows:
                    n = (await conn.execute(update(t.document_recipients).where(
                        r.document_id == x.id, r.org == x.org, r.reminded_at.is_(None)).values(reminded_at=now))
                    ).rowcount
                    if not n:  # another node claimed it first
                        continue
                    out.append((_tracking(x), x.sender))
                    if self.report is not None:
                        await self.report(conn, "document.overdue", {
                            "number": x.number, "issuing_organ": x.issuing_organ, "org": x.org, "urgency": urgency,
                            "state": out[-1][0].state, "queued_at": _iso(x.queued_at), "at": _iso(now)})
                if len(out) >= limit:
                    break
        self._announce(bool(out) and self.report is not None)
        return out

    async def queue_outcome(self, queue_id: str, *, sent: bool, failure: str = "") -> bool:
        """The queue sent (or gave up on) the message of this queue id; True when it was a document's."""
        r = t.document_recipients.c
        values = {"sent_at": self.clock()} if sent else {"failed_at": self.clock(), "failure": failure[:300]}
        col = r.sent_at if sent else r.failed_at
        async with self.db.write() as conn:
            n = (await conn.execute(update(t.document_recipients).where(r.queue_id == queue_id, col.is_(None))
                                    .values(**values))).rowcount
        return bool(n)

    async def dispatched_page(self, *, sender: str | None = None, offset: int = 0,
                              limit: int = 50) -> tuple[list[int], int]:
        """Ids of dispatched documents, newest first, one page of them (sender: who dispatched); and how many in all."""
        d = t.documents_out.c
        where = [] if sender is None else [d.sender == sender]
        async with self.db.read() as conn:
            ids = (await conn.execute(select(d.id).where(*where).order_by(d.id.desc()).offset(offset).limit(limit)
                                      )).scalars().all()
            total = (await conn.execute(select(func.count()).select_from(t.documents_out).where(*where))).scalar()
        return list(ids), int(total or 0)

    async def tracking(self, *, number: str | None = None, limit: int = 200, document_id: int | None = None,
                       sender: str | None = None, issuing_organ: str | None = None,
                       document_ids: list[int] | None = None) -> list[Tracking]:
        """Recipient rows of the latest documents, newest first; each filter narrows (sender: who dispatched)."""
        d, r = t.documents_out.c, t.document_recipients.c
        q = (select(d.id, d.number, d.issuing_organ, d.title, d.urgency, r.org, r.message_id, r.queued_at, r.sent_at,
                    r.failed_at, r.failure, r.delivered_at, r.registered_at, r.signed_at, r.registration_number,
                    r.signed_by)
             .join_from(t.documents_out, t.document_recipients, d.id == r.document_id)
             .order_by(d.id.desc(), r.org).limit(limit))
        for col, value in ((d.number, number), (d.id, document_id), (d.sender, sender),
                           (d.issuing_organ, issuing_organ)):
            if value is not None:
                q = q.where(col == value)
        if document_ids is not None:
            q = q.where(d.id.in_(document_ids))
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [_tracking(x) for x in rows]

    # --- registration (district side) -----------------------------------------------------------
    async def register(self, *, partner_org: str, issuing_organ: str, number: str, title: str, urgency: str,
                       manifest: str, message_id: str) -> tuple[Registration, bool]:
        """Register a received document; (its registration, True when new). A repeat returns the first one."""
        c = t.documents_in.c
        for attempt in range(REGISTER_RETRIES):
            existing = await self._registered(partner_org, issuing_organ, number)
            if existing is not None:
                return existing, False
            now = self.clock()
            year = now.astimezone(LOCAL_ZONE).year  # registration numbers follow the local calendar year
            try:
                async with self.db.write() as conn:
                    top = (await conn.execute(select(func.max(c.reg_seq)).where(c.reg_year == year))).scalar()
                    seq = (top or 0) + 1
                    await conn.execute(insert(t.documents_in).values(
                        partner_org=partner_org, issuing_organ=issuing_organ, number=number, title=title,
                        urgency=urgency, reg_year=year, reg_seq=seq,
                        registration_number=self.pattern.format(year=year, seq=seq),
                        manifest=manifest, message_id=message_id, received_at=now))
                    if self.report is not None:
                        await self.report(conn, "document.registered", {
                            "registration_number": self.pattern.format(year=year, seq=seq), "number": number,
                            "issuing_organ": issuing_organ, "from_org": partner_org, "title": title,
                            "urgency": urgency or None, "at": _iso(now)})
                self._announce(self.report is not None)
            except IntegrityError:  # the same document or the same number registered at the same moment
                await asyncio.sleep(random.uniform(0, 0.005) * (attempt + 1))  # jittered, so racers spread out
                continue
            got = await self._registered(partner_org, issuing_organ, number)
            assert got is not None
            return got, True
        raise AlreadyExists(f"could not number {number} after {REGISTER_RETRIES} tries (too many at once)")

    async def _registered(self, partner_org: str, issuing_organ: str, number: str) -> Registration | None:
        c = t.documents_in.c
        async with self.db.read() as conn:
            r = (await conn.execute(select(t.documents_in).where(
                c.partner_org == partner_org, c.issuing_organ == issuing_organ, c.number == number))).first()
        return None if r is None else _registration(r)

    async def registrations(self, *, unsigned_only: bool = False, limit: int = 200, offset: int = 0,
                            urgent_first: bool = False) -> list[Registration]:
        """Registered documents, newest first; `urgent_first`: those not yet signed for, 特急 then 加急, before all."""
        c = t.documents_in.c
        order = [c.id.desc()]
        if urgent_first:
            waiting = c.signed_at.is_(None)
            order.insert(0, case(*((waiting & (c.urgency == u), rank) for rank, u in enumerate(URGENT_ORDER)),
                                 else_=len(URGENT_ORDER)))
        q = select(t.documents_in).order_by(*order).offset(offset).limit(limit)
        if unsigned_only:
            q = q.where(c.signed_at.is_(None))
        async with self.db.read() as conn:
            return [_registration(r) for r in (await conn.execute(q)).all()]

    async def count_registrations(self) -> tuple[int, int]:
        """(registered documents in all, of them not yet signed for)."""
        c = t.documents_in.c
        async with self.db.read() as conn:
            row = (await conn.execute(select(func.count(), func.count(case((c.signed_at.is_(None), 1))))
                                      .select_from(t.documents_in))).one()
        return int(row[0]), int(row[1])

    async def registration(self, registration_number: str) -> Registration:
        c = t.documents_in.c
        async with self.db.read() as conn:
            r = (await conn.execute(select(t.documents_in).where(c.registration_number == registration_number))).first()
        if r is None:
            raise NotFound(f"no registered document {registration_number}")
        return _registration(r)

    async def registration_by_id(self, registration_id: int) -> Registration:
        async with self.db.read() as conn:
            r = (await conn.execute(select(t.documents_in).where(t.documents_in.c.id == registration_id))).first()
        if r is None:
            raise NotFound(f"no registered document {registration_id}")
        return _registration(r)

    async def sign(self, registration_number: str, by: str) -> tuple[Registration, bool]:
        """Sign for (签收) a registered document; (it, True when this call signed it, False when already signed)."""
        by = by.strip()
        if not by or len(by) > 100:
            raise InvalidInput("who signs for the document is required (at most 100 characters)")
        c = t.documents_in.c
        now = self.clock()
        async with self.db.write() as conn:
            n = (await conn.execute(update(t.documents_in).where(
                c.registration_number == registration_number, c.signed_at.is_(None)).values(
                signed_at=now, signed_by=by))).rowcount
            told = bool(n) and self.report is not None
            if told:
                r = (await conn.execute(select(c.number, c.issuing_organ, c.partner_org).where(
                    c.registration_number == registration_number))).one()
                await self.report(conn, "document.signed", {
                    "registration_number": registration_number, "number": r.number, "issuing_organ": r.issuing_organ,
                    "from_org": r.partner_org, "signed_by": by, "at": _iso(now)})
        self._announce(told)
        return await self.registration(registration_number), bool(n)

    # --- quarantine -----------------------------------------------------------------------------
    async def quarantine(self, *, sender: str, reason: str, raw: bytes) -> int:
        if len(raw) > MAX_QUARANTINE_BYTES:
            raw = raw[:MAX_QUARANTINE_BYTES]
            reason += f" (cut to {MAX_QUARANTINE_BYTES} bytes)"
        async with self.db.write() as conn:
            res = await conn.execute(insert(t.document_quarantine).values(
                received_at=self.clock(), sender=sender[:320], reason=reason[:300], raw=raw))
            return res.inserted_primary_key[0]

    async def quarantined(self, *, limit: int = 200) -> list[tuple[int, datetime, str, str, int]]:
        """(id, received_at, sender, reason, size) of held document messages, newest first."""
        c = t.document_quarantine.c
        async with self.db.read() as conn:
            rows = (await conn.execute(select(c.id, c.received_at, c.sender, c.reason, func.length(c.raw))
                                       .order_by(c.id.desc()).limit(limit))).all()
        return [(r[0], _aware(r[1]), r[2], r[3], r[4]) for r in rows]


def _iso(d: datetime) -> str:
    return _aware(d).isoformat()


def check_pattern(pattern: str) -> None:
    """A registration pattern must use {seq} and may use {year}, nothing else (福收〔{year}〕{seq}号)."""
    try:
        sample = pattern.format(year=2026, seq=1)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"registration pattern {pattern!r}: only {{year}} and {{seq}} ({exc})") from None
    if "{seq" not in pattern or len(sample) > 90:
        raise InvalidInput(f"registration pattern {pattern!r} must contain {{seq}} and stay short")
