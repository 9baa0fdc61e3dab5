"""Retention: per folder kind (and optionally per department), keep mail N days, then delete it or move it to the year archive.

A run walks the accounts; each account is claimed in the central database by a
compare-and-set on retention_claims (so with several nodes exactly one works on an
account at a time, and an account done within `min_interval` is not redone by another
node). Work is in bounded batches of UIDs, each one ordinary store transaction: IMAP
sessions see ordinary EXPUNGE / VANISHED updates. Legal holds (holds.py) are applied
by the store itself: a held message is counted as kept and stays.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from . import schema as t
from .archive import archive_folder
from .db import Database
from .errors import InvalidInput, NotFound
from .messagewrite import uid_conditions
from .model import Account, Folder

KINDS = ("inbox", "sent", "drafts", "trash", "junk", "archive", "other")
ACTIONS = ("delete", "archive")
BATCH = 500  # messages removed per store transaction
LEASE = timedelta(minutes=10)  # a claim not released by then (a node died) may be taken by another node
MAX_DAYS = 36_500

_SPECIAL = {"\\Sent": "sent", "\\Drafts": "drafts", "\\Trash": "trash", "\\Junk": "junk", "\\Archive": "archive"}


@dataclass(frozen=True)
class Policy:
    id: int
    folder_kind: str
    department_code: str  # "" = every department
    days: int
    action: str


@dataclass
class Item:
    account: str
    folder: str
    action: str
    due: int  # messages older than the policy allows
    done: int = 0  # removed or archived
    kept: int = 0  # left in place by a legal hold


@dataclass
class Report:
    accounts: int = 0  # accounts this run worked on
    skipped: int = 0  # accounts another node holds or did recently
    items: list[Item] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        return sum(i.done for i in self.items if i.action == "delete")

    @property
    def archived(self) -> int:
        return sum(i.done for i in self.items if i.action == "archive")

    @property
    def kept(self) -> int:
        return sum(i.kept for i in self.items)


def folder_kind(folder: Folder) -> str:
    if folder.name == "INBOX":
        return "inbox"
    return _SPECIAL.get(folder.special_use or "", "other")


def _policy(r) -> Policy:
    return Policy(r.id, r.folder_kind, r.department_code, r.days, r.action)


async def set_policy(central: Database, folder_kind: str, days: int, action: str, *, department: str = "") -> Policy:
    if folder_kind not in KINDS:
        raise InvalidInput(f"folder kind must be one of {', '.join(KINDS)}")
    if action not in ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}")
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be 1 to {MAX_DAYS}")
    c = t.retention_policies.c
    async with central.write() as conn:
        if department and (await conn.execute(select(t.departments.c.id)
                                              .where(t.departments.c.code == department))).first() is None:
            raise NotFound(f"no department {department}")
        where = and_(c.folder_kind == folder_kind, c.department_code == department)
        if (await conn.execute(select(c.id).where(where))).first() is None:
            await conn.execute(insert(t.retention_policies).values(folder_kind=folder_kind, department_code=department,
                                                                   days=days, action=action))
        else:
            await conn.execute(update(t.retention_policies).where(where).values(days=days, action=action))
        return _policy((await conn.execute(select(t.retention_policies).where(where))).first())


async def remove_policy(central: Database, folder_kind: str, *, department: str = "") -> None:
    c = t.retention_policies.c
    async with central.write() as conn:
        n = (await conn.execute(delete(t.retention_policies).where(and_(
            c.folder_kind == folder_kind, c.department_code == department)))).rowcount
    if not n:
        raise NotFound(f"no retention policy for {folder_kind}" + (f" in {department}" if department else ""))


async def list_policies(central: Database) -> list[Policy]:
    q = select(t.retention_policies).order_by(t.retention_policies.c.folder_kind, t.retention_policies.c.department_code)
    return [_policy(r) for r in await central.read_sync(lambda conn: conn.execute(q).all())]


def pick(policies: list[Policy], kind: str, department: str | None) -> Policy | None:
    """The department's own policy for the kind, else the general one."""
    own = [p for p in policies if p.folder_kind == kind and department and p.department_code == department]
    return own[0] if own else next((p for p in policies if p.folder_kind == kind and not p.department_code), None)


async def claim(central: Database, account_id: int, node: str, now: datetime, min_interval: timedelta) -> bool:
    """Compare-and-set: take the account unless another node holds it or did it within `min_interval`."""
    c = t.retention_claims.c
    try:
        async with central.write() as conn:
            if (await conn.execute(select(c.account_id).where(c.account_id == account_id))).first() is None:
                await conn.execute(insert(t.retention_claims).values(
                    account_id=account_id, node="", claimed_until=now - LEASE, last_run_at=None))
    except IntegrityError:
        pass  # another node inserted it first: the update below decides
    async with central.write() as conn:
        n = (await conn.execute(update(t.retention_claims).where(and_(
            c.account_id == account_id, c.claimed_until <= now,
            or_(c.last_run_at.is_(None), c.last_run_at <= now - min_interval))).values(
            node=node, claimed_until=now + LEASE))).rowcount
    return n == 1


async def release(central: Database, account_id: int, node: str, now: datetime) -> None:
    c = t.retention_claims.c
    async with central.write() as conn:
        await conn.execute(update(t.retention_claims).where(and_(c.account_id == account_id, c.node == node))
                           .values(claimed_until=now, last_run_at=now))


async def run(store, *, dry_run: bool = False, now: datetime | None = None, node: str | None = None,
              min_interval: timedelta = timedelta(0), accounts: list[Account] | None = None,
              batch: int = BATCH, records: Collection[tuple[str, str]] = ()) -> Report:
    """One retention pass over every account (or `accounts`); `dry_run` only counts what it would do.

    `records`: (account address, folder name) pairs that are records, not mail: no policy deletes
    or moves what they hold (the documents account's 收文 and 回执, documents.register_folders).
    """
    now = now or datetime.now(timezone.utc)
    node = node or store.node
    central = store.router.central
    report = Report()
    policies = await list_policies(central)
    if not policies:
        return report
    for acct in accounts if accounts is not None else await store.directory.list_accounts():
        if not dry_run and not await claim(central, acct.id, node, now, min_interval):
            report.skipped += 1
            continue
        report.accounts += 1
        try:
            for f in await store.folders(acct):
                if f.ref.partition != store.home(acct):
                    continue  # year archives are the destination, not subject to retention
                if (acct.address, f.name) in records:
                    continue
                pol = pick(policies, folder_kind(f), acct.department_code)
                if pol is None:
                    continue
                item = await _folder(store, acct, f, pol, now - timedelta(days=pol.days), now, dry_run, batch)
                if item.due:
                    report.items.append(item)
        finally:
            if not dry_run:
                await release(central, acct.id, node, now)
    if not dry_run and (report.deleted or report.archived or report.kept):
        await store.directory.audit("retention", "retention.run", "", deleted=report.deleted,
                                    archived=report.archived, kept_by_hold=report.kept, accounts=report.accounts)
    return report


async def _folder(store, acct: Account, f: Folder, pol: Policy, cutoff: datetime, now: datetime, dry_run: bool,
                  batch: int) -> Item:
    c = t.messages.c
    db = await store.router.database(f.ref.partition)
    old = and_(c.folder_id == f.ref.id, c.internal_date < cutoff)
    due_q = select(func.count()).where(old)
    item = Item(acct.address, f.name, pol.action, await db.read_sync(lambda conn: conn.execute(due_q).scalar()))
    if not item.due:
        return item
    if dry_run:
        item.kept = len(await store._held(f.ref, [old]))
        return item
    if pol.action == "archive":
        if not store.router.year_mode:
            raise InvalidInput("retention action archive needs [storage] mode = \"year\" or \"hybrid\"")
        first_q = select(func.min(c.internal_date)).where(old)
        first = await db.read_sync(lambda conn: conn.execute(first_q).scalar())
        for year in range(first.year, min(cutoff.year, now.year - 1) + 1):  # closed years only
            start = datetime(year, 1, 1, tzinfo=timezone.utc)
            end = min(datetime(year + 1, 1, 1, tzinfo=timezone.utc), cutoff)
            moved, _b = await archive_folder(store, acct, f.ref.id, f.name, year, start, end)
            item.done += moved
        return item
    after = 0
    while True:
        q = select(c.uid).where(and_(old, c.uid > after)).order_by(c.uid).limit(batch)
        uids = await db.read_sync(lambda conn: conn.execute(q).scalars().all())
        if not uids:
            return item
        gone, kept = await store._remove_report(f.ref, [and_(old, cond) for cond in uid_conditions(uids)])
        item.done += len(gone)
        item.kept += len(kept)
        after = uids[-1]
