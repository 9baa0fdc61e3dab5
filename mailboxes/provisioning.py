"""New accounts' rows: one account's folders, or many accounts at once (a staff list imported) in few transactions.

``Mailboxes.add_account`` makes an account in two transactions (its directory row, then its INBOX,
special-use folders, subscriptions and usage row in its home partition). ``add_accounts`` does the
same for many: the directory rows in one transaction, then each home partition's rows in one more,
in statements of at most BATCH rows. Each commit is a disk sync, so 2,000 accounts one by one took
4,000 of them. Everything ``add_account`` refuses is refused here before anything is written (an
unknown domain or department, an address already taken, also twice in one list, a negative quota).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from . import identity
from . import schema as t
from .addresses import normalise_address
from .errors import AlreadyExists, InvalidInput, NotFound
from .model import SPECIAL_USE_FOLDERS, Account, Role

INBOX = "INBOX"  # RFC 3501 §5.1
BATCH = 500  # rows per INSERT and names per IN (...): well under SQLite's and asyncpg's bound-parameter limits


@dataclass(frozen=True)
class NewAccount:
    """One account to create (the arguments of ``Mailboxes.add_account``)."""

    address: str
    password: str | None = None
    display_name: str = ""
    department: str | None = None
    role: Role = Role.USER
    quota_bytes: int = 0
    quota_messages: int = 0


def _chunks(items: Sequence, size: int = BATCH) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


async def add_directory_rows(directory, specs: Sequence[NewAccount]) -> list[Account]:
    """The accounts' directory rows, in one transaction; the accounts in the order of `specs`."""
    addresses = [normalise_address(s.address) for s in specs]
    seen: set[str] = set()
    for address in addresses:
        if address in seen:
            raise AlreadyExists(f"{address} is listed twice")
        seen.add(address)
    if any(s.quota_bytes < 0 or s.quota_messages < 0 for s in specs):
        raise InvalidInput("quota cannot be negative")
    async def hashed(password: str | None) -> str | None:
        return await directory.hash_password(password) if password is not None else None

    hashes = await asyncio.gather(*(hashed(s.password) for s in specs))  # as many at once as it has slots
    made = await directory.db.write_sync(lambda conn, _blocking: _directory_rows(directory, conn, addresses, specs,
                                                                                 hashes))
    return [made[a] for a in addresses]


def _directory_rows(directory, conn, addresses: list[str], specs: Sequence[NewAccount],
                    hashes: Sequence[str | None]) -> dict[str, Account]:
    """The rows of add_directory_rows, in its one write transaction (one hand-off on SQLite): address -> account."""
    domains = {d.rsplit("@", 1)[1] for d in addresses}
    domain_ids = dict(conn.execute(select(t.domains.c.name, t.domains.c.id).where(t.domains.c.name.in_(domains))).all())
    for domain in sorted(domains - set(domain_ids)):
        raise NotFound(f"domain {domain} is not a local domain; add it with `postroom domain add`")
    codes = {s.department.lower(): s.department for s in specs if s.department}
    dept_ids = dict(conn.execute(select(t.departments.c.code, t.departments.c.id)
                                 .where(t.departments.c.code.in_(codes))).all()) if codes else {}
    for code in sorted(set(codes) - set(dept_ids)):
        raise NotFound(f"no department {codes[code]}")
    for chunk in _chunks(addresses):
        for table, what in ((t.accounts, "an account"), (t.aliases, "an alias"), (t.groups, "a group")):
            taken = conn.execute(select(table.c.address).where(table.c.address.in_(chunk))).first()
            if taken is not None:
                raise AlreadyExists(f"{taken.address} is already {what}")
    now = directory.clock()
    rows = [dict(address=a, domain_id=domain_ids[a.rsplit("@", 1)[1]], display_name=s.display_name,
                 department_id=dept_ids[s.department.lower()] if s.department else None, password_hash=h,
                 role=Role(s.role).value, quota_bytes=s.quota_bytes, quota_messages=s.quota_messages,
                 enabled=True, created_at=now)
            for a, s, h in zip(addresses, specs, hashes, strict=True)]
    for chunk in _chunks(rows):
        conn.execute(insert(t.accounts), list(chunk))
    made: dict[str, Account] = {}
    for chunk in _chunks(addresses):
        for r in conn.execute(directory._account_select().where(t.accounts.c.address.in_(chunk))):
            made[r.address] = directory._account(r)
    return made


def provision(conn, accounts: Sequence[Account], clock: Callable[[], datetime]) -> None:
    """INBOX and the special-use folders (RFC 6154), subscribed, and a usage row, for each of `accounts`
    whose home partition `conn` writes to; what an account already has is kept (idempotent). A
    Database.write_sync function (one hand-off to the SQLite writer thread)."""
    wanted = [(INBOX, None), *SPECIAL_USE_FOLDERS]
    ids = [a.id for a in accounts]
    have_folders: set[tuple[int, str]] = set()
    subscribed: set[tuple[int, str]] = set()
    have_usage: set[int] = set()
    for chunk in _chunks(ids):
        f, s, u = t.folders.c, t.subscriptions.c, t.mailbox_usage.c
        have_folders.update(conn.execute(select(f.account_id, f.name).where(f.account_id.in_(chunk))).all())
        subscribed.update(conn.execute(select(s.account_id, s.name).where(s.account_id.in_(chunk))).all())
        have_usage.update(conn.execute(select(u.account_id).where(u.account_id.in_(chunk))).scalars())
    new = [(i, name, use) for i in ids for name, use in wanted if (i, name) not in have_folders]
    uidv = identity.next_uidvalidity_sync(conn, len(new)) if new else 0
    now = clock()
    folders = [dict(account_id=i, name=name, uidvalidity=uidv + n, uidnext=1, highestmodseq=1, special_use=use,
                    created_at=now) for n, (i, name, use) in enumerate(new)]
    # The folders we make are subscribed, so clients that list with LSUB see them;
    # CREATE by a client subscribes nothing (as Dovecot: clients subscribe themselves).
    subscriptions = [dict(account_id=i, name=name) for i, name, _use in new if (i, name) not in subscribed]
    usage = [dict(account_id=i, bytes=0, messages=0) for i in ids if i not in have_usage]
    for table, rows in ((t.folders, folders), (t.subscriptions, subscriptions), (t.mailbox_usage, usage)):
        for chunk in _chunks(rows):
            conn.execute(insert(table), list(chunk))
