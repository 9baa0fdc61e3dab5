"""The operations layer of the admin console and the JSON API: the queue, DKIM keys and the dashboard's figures.

Implementation notes
- One layer for both interfaces (views/admin_queue.py and api_queue.py); queue changes go
  through delivery.queue.Queue, queue reads through delivery.queueview.QueueView (what
  `postroom queue list/routes` reads) and keys through delivery.keys.DkimKeys (`postroom dkim`).
  Every change is audited (`Directory.audit`) and logged once on `postroom.admin` (no secrets,
  no message text).
- Mail volume: the store keeps no delivery log, so "messages per day" is counted from the
  messages themselves: their internal date (the time of delivery for delivered mail; an IMAP
  APPEND or an import may set another date), in folders other than Drafts, mail since
  expunged not counted, copies counted once per folder. The days are SUM(CASE ...) columns of
  two queries (mailboxes, Sent) per non-archive partition, the same SQL on SQLite and PostgreSQL;
  `folder_id IN (folders)` with the date range makes SQLite seek ix_messages_date (folder_id,
  internal_date) per folder and read only the last VOLUME_DAYS of index entries (measured: 300,000
  messages over 200 days, 100 accounts: 26-68 ms; a join plan scanned the whole index, 630-870 ms).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Select, and_, case, func, select

from delivery import dkim
from delivery.keys import DkimKeys, public_txt
from delivery.queue import Queue, aware, node_id
from delivery.queueview import QueueView
from delivery.routes import Routes
from mailboxes import schema as t
from mailboxes.errors import InvalidInput, NotFound
from mailboxes.model import Account
from mailboxes.partitions import ARCHIVE_PREFIX
from mailboxes.service import Mailboxes

log = logging.getLogger("postroom.admin")

VOLUME_DAYS = 14
ID_CHUNK = 500  # account ids per IN (...) when a department partition's usage is mapped to departments
KEY_BITS = 2048


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class DkimDomain:
    domain: str
    selector: str | None  # the active key's, None without a key
    created_at: datetime | None
    record_name: str | None
    txt: str | None  # the TXT value to publish
    zone_line: str | None  # the same as a zone-file line


@dataclass(frozen=True)
class DayCount:
    day: str  # YYYY-MM-DD (UTC)
    delivered: int  # messages in folders other than Sent and Drafts
    sent: int  # messages in Sent folders


@dataclass(frozen=True)
class DepartmentStorage:
    code: str  # "" for accounts without a department
    name: str
    accounts: int
    bytes: int
    messages: int
    quota_bytes: int  # the sum of the accounts' quotas (0: unlimited ones not counted)


@dataclass
class Operations:
    """Built once by make_app; the delivery parts are the running server's when it has them."""

    mailboxes: Mailboxes
    queue: Queue | None = None
    keys: DkimKeys | None = None
    selector: str = "postroom"
    poke: Callable[[], None] | None = None  # wakes the delivery worker after a retry or release
    clock: Callable[[], datetime] = utcnow
    view: QueueView = field(init=False)  # the queue's pages and figures (what `postroom queue list` reads)

    def __post_init__(self) -> None:
        central = self.mailboxes.router.central
        if self.queue is None:
            self.queue = Queue(central, node=node_id(), clock=self.clock)  # never claims: admin reads and edits
        if self.keys is None:
            self.keys = DkimKeys(central, clock=self.clock)
        self.view = QueueView(central, Routes(central, clock=self.clock))

    @property
    def db(self):
        return self.mailboxes.router.central

    # --- audit -------------------------------------------------------------------------

    async def _audited(self, actor: Account, via: str, action: str, target: str, **detail) -> None:
        await self.mailboxes.directory.audit(actor.address, action, target, via=via, **detail)
        log.info("%s by %s via %s: %s %s", action, actor.address, via, target,
                 " ".join(f"{k}={v}" for k, v in detail.items()))

    # --- the queue ---------------------------------------------------------------------

    async def queue_action(self, actor: Account, via: str, action: str, queue_id: str) -> int:
        """retry | hold | release | delete one message; returns the recipients it touched (NotFound: no such id)."""
        q = self.queue
        if action == "retry":
            n = await q.retry(queue_id)
        elif action == "hold":
            n = await q.hold(queue_id)
        elif action == "release":
            n = await q.release(queue_id)
        elif action == "delete":
            n = (await self.view.detail(queue_id)).item.recipients
            await q.delete(queue_id)
        else:
            raise InvalidInput("action must be retry, hold, release or delete")
        await self._audited(actor, via, f"queue.{action}", queue_id, recipients=n)
        if action in ("retry", "release") and self.poke is not None:
            self.poke()  # commit first, then wake the worker
        return n

    # --- DKIM --------------------------------------------------------------------------

    async def dkim_domains(self) -> list[DkimDomain]:
        """Every local domain with its active signing key's selector and the TXT record to publish."""
        k = t.dkim_keys.c
        domains = await self.mailboxes.directory.list_domains()
        async with self.db.read() as conn:
            rows = (await conn.execute(select(k.domain, k.selector, k.private_pem, k.created_at)
                                       .where(k.active.is_(True)))).all()
        active = {x.domain: x for x in rows}
        out = []
        for d in domains:
            x = active.get(d.name)
            if x is None:
                out.append(DkimDomain(d.name, None, None, None, None, None))
                continue
            txt = public_txt(bytes(x.private_pem))
            out.append(DkimDomain(d.name, x.selector, aware(x.created_at), dkim.dns_record_name(d.name, x.selector),
                                  txt, dkim.zone_file_record(d.name, x.selector, txt)))
        return out

    async def dkim_generate(self, actor: Account, via: str, domain: str, selector: str | None = None) -> DkimDomain:
        """A new active signing key for a local domain (the old key stays stored, inactive)."""
        domain = domain.strip().lower().rstrip(".")
        if domain not in await self.mailboxes.directory.local_domains():
            raise NotFound(f"no local domain {domain}")
        selector = (selector or self.selector).strip()
        try:
            dkim.dns_record_name(domain, selector)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        await self.keys.generate(domain, selector, KEY_BITS)  # the key is made in a thread
        await self._audited(actor, via, "dkim.generate", domain, selector=selector, bits=KEY_BITS)
        return next(d for d in await self.dkim_domains() if d.domain == domain)

    # --- dashboard ---------------------------------------------------------------------

    async def volume(self, days: int = VOLUME_DAYS) -> list[DayCount]:
        """Messages per UTC day for the last `days` days (today included), over every mail partition."""
        today = self.clock().astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        starts = [today - timedelta(days=days - 1 - i) for i in range(days)]
        ends = starts[1:] + [today + timedelta(days=1)]
        f, msg = t.folders.c, t.messages.c
        days_of = [func.sum(case((and_(msg.internal_date >= s, msg.internal_date < e), 1), else_=0))
                   for s, e in zip(starts, ends)]

        def counted(folders) -> Select:  # messages of those folders since the first day, one sum per day
            return select(*days_of).where(msg.folder_id.in_(select(f.id).where(folders)),
                                          msg.internal_date >= starts[0])
        delivered = counted(and_(f.special_use.is_distinct_from("\\Sent"), f.special_use.is_distinct_from("\\Drafts")))
        sent = counted(f.special_use == "\\Sent")
        totals = [0] * (2 * days)
        for db in await self._mail_databases():
            async with db.read() as conn:
                row = (*(await conn.execute(delivered)).one(), *(await conn.execute(sent)).one())
            totals = [a + int(b or 0) for a, b in zip(totals, row)]
        return [DayCount(s.strftime("%Y-%m-%d"), totals[i], totals[days + i]) for i, s in enumerate(starts)]
        return [DayCount(s.strftime("%Y-%m-%d"), totals[2 * i], totals[2 * i + 1]) for i, s in enumerate(starts)]

    async def _mail_databases(self) -> list:
        router = self.mailboxes.router
        names = sorted(n for n in await router.known() if not n.startswith(ARCHIVE_PREFIX))
        return [await router.database(n) for n in names]

    async def storage(self) -> list[DepartmentStorage]:
        """Quota usage summed per department (GROUP BY in SQL where usage and accounts share a database)."""
        a, u = t.accounts.c, t.mailbox_usage.c
        sums: dict[int | None, list[int]] = {}
        async with self.db.read() as conn:
            for dept, n, quota in (await conn.execute(select(a.department_id, func.count(), func.sum(a.quota_bytes))
                                                      .group_by(a.department_id))).all():
                sums[dept] = [int(n), 0, 0, int(quota or 0)]
            central_rows = (await conn.execute(
                select(a.department_id, func.sum(u.bytes), func.sum(u.messages))
                .select_from(t.mailbox_usage.join(t.accounts, u.account_id == a.id)).group_by(a.department_id))).all()
        for dept, b, n in central_rows:
            s = sums.setdefault(dept, [0, 0, 0, 0])
            s[1] += int(b or 0)
            s[2] += int(n or 0)
        for db in await self._mail_databases():
            if db is self.db:
                continue
            await self._partition_usage(db, sums)
        names = {d.id: d for d in await self.mailboxes.directory.list_departments()}
        out = [DepartmentStorage(names[i].code if i in names else "", names[i].name if i in names else "",
                                 *v) for i, v in sums.items()]
        return sorted(out, key=lambda d: (-d.bytes, d.code))

    async def _partition_usage(self, db, sums: dict) -> None:
        """A department database: its usage rows, mapped to departments ID_CHUNK accounts at a time."""
        u, a = t.mailbox_usage.c, t.accounts.c
        async with db.read() as conn:
            rows = (await conn.execute(select(u.account_id, u.bytes, u.messages))).all()
        for i in range(0, len(rows), ID_CHUNK):
            chunk = rows[i:i + ID_CHUNK]
            async with self.db.read() as conn:
                dept_of = dict((await conn.execute(select(a.id, a.department_id).where(
                    a.id.in_([x.account_id for x in chunk])))).all())
            for x in chunk:
                s = sums.setdefault(dept_of.get(x.account_id), [0, 0, 0, 0])
                s[1] += int(x.bytes or 0)
                s[2] += int(x.messages or 0)
