"""The organisation address book: bounded reads of the directory's people, departments and groups.

Implementation notes
- Every query has a LIMIT (the constants below), so what a reader asks for never
  makes the server read or hold more than that many rows.
- Disabled accounts are never shown: not as people, not as group members or posters.
- Search is a display-name substring (Chinese included: 王 finds 王芳) or an address
  prefix, case-insensitive; LIKE wildcards in the query are escaped, so `%` and `_`
  match only themselves. The directory is small (thousands of rows): a scan bounded
  by the LIMIT, no index needed.
- It lives beside mailboxes/directory.py (which writes the same tables) to keep
  that module under the size cap; it only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import and_, func, or_, select

from . import schema as t
from .db import Database
from .model import Department
from .offload import offload

MAX_QUERY_CHARS = 64  # longer search text is cut
MAX_RESULTS = 50  # people or groups returned by one search or page at most
MAX_DEPARTMENTS = 2000  # departments listed at most (the tree)
MAX_GROUPS = 200  # groups listed at most
MAX_GROUP_LIST = 200  # members or posters listed per group at most
MAX_CARDS = 10_000  # people served as one CardDAV address book at most


@dataclass(frozen=True)
class Person:
    """An enabled account as the address book shows it."""

    address: str
    name: str
    department_code: str | None
    department_name: str | None
    updated: datetime | None = None  # when what is shown last changed (UTC): the vCard's REV


@dataclass(frozen=True)
class GroupEntry:
    """A group as the address book shows it: who is in it and who may post (RFC-free: our post_policy)."""

    address: str
    name: str
    post_policy: str
    members: tuple[str, ...] = ()
    posters: tuple[str, ...] = ()


def clean_query(query: str) -> str:
    return query.strip()[:MAX_QUERY_CHARS].lower()


def _matching(name_col, address_col, query: str):
    """The condition "name contains the query or address starts with it", None for an empty query."""
    q = clean_query(query)
    if not q:
        return None
    return or_(func.lower(name_col).contains(q, autoescape=True), address_col.startswith(q, autoescape=True))


def _bounded(limit: int) -> int:
    return max(1, min(limit, MAX_RESULTS))


class AddressBook:
    def __init__(self, db: Database) -> None:
        self.db = db

    _person_cols = (t.accounts.c.address, t.accounts.c.display_name, t.departments.c.code.label("dept_code"),
                    t.departments.c.name.label("dept_name"), t.accounts.c.created_at, t.accounts.c.updated_at,
                    t.departments.c.updated_at.label("dept_updated_at"))

    def _people(self):
        return (select(*self._person_cols)
                .select_from(t.accounts.outerjoin(t.departments, t.accounts.c.department_id == t.departments.c.id))
                .where(t.accounts.c.enabled.is_(True))
                .order_by(t.accounts.c.display_name, t.accounts.c.address))

    @staticmethod
    def _person(r) -> Person:
        times = [d if d.tzinfo else d.replace(tzinfo=timezone.utc)  # SQLite returns naive UTC
                 for d in (r.created_at, r.updated_at, r.dept_updated_at) if d is not None]
        return Person(r.address, r.display_name, r.dept_code, r.dept_name, max(times, default=None))

    async def search_people(self, query: str, *, limit: int = MAX_RESULTS) -> list[Person]:
        """People whose display name contains `query` or whose address starts with it."""
        cond = _matching(t.accounts.c.display_name, t.accounts.c.address, query)
        if cond is None:
            return []
        async with self.db.read() as conn:
            rows = (await conn.execute(self._people().where(cond).limit(_bounded(limit)))).all()
        return [self._person(r) for r in rows]

    async def department_people(self, code: str, *, offset: int = 0,
                                limit: int = MAX_RESULTS) -> tuple[list[Person], bool]:
        """One page of the people in department `code` and whether there are more."""
        limit = _bounded(limit)
        q = (self._people().where(t.departments.c.code == code.strip().lower()[:64])
             .offset(max(0, offset)).limit(limit + 1))
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [self._person(r) for r in rows[:limit]], len(rows) > limit

    async def departments(self) -> list[Department]:
        """The department tree's nodes (parent ids), at most MAX_DEPARTMENTS, by code."""
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.departments).order_by(t.departments.c.code)
                                       .limit(MAX_DEPARTMENTS))).all()
        return [Department(r.id, r.code, r.name, r.parent_id, r.kind) for r in rows]

    async def search_groups(self, query: str, *, limit: int = MAX_RESULTS) -> list[GroupEntry]:
        """Groups whose name contains `query` or whose address starts with it (without members)."""
        cond = _matching(t.groups.c.name, t.groups.c.address, query)
        if cond is None:
            return []
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.groups.c.address, t.groups.c.name, t.groups.c.post_policy)
                                       .where(cond).order_by(t.groups.c.name, t.groups.c.address)
                                       .limit(_bounded(limit)))).all()
        return [GroupEntry(r.address, r.name, r.post_policy) for r in rows]

    async def groups(self) -> list[GroupEntry]:
        """Groups (at most MAX_GROUPS) with their enabled members and posters (at most MAX_GROUP_LIST each)."""
        disabled = select(t.accounts.c.address).where(t.accounts.c.enabled.is_(False))
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.groups.c.id, t.groups.c.address, t.groups.c.name,
                                              t.groups.c.post_policy)
                                       .order_by(t.groups.c.name, t.groups.c.address).limit(MAX_GROUPS))).all()
            out = []
            for g in rows:
                lists = []
                for table in (t.group_members, t.group_posters):
                    lists.append(tuple((await conn.execute(
                        select(table.c.address).where(and_(table.c.group_id == g.id,
                                                           table.c.address.not_in(disabled)))
                        .order_by(table.c.address).limit(MAX_GROUP_LIST))).scalars().all()))
                out.append(GroupEntry(g.address, g.name, g.post_policy, *lists))
        return out

    async def everyone(self, *, limit: int = MAX_CARDS) -> list[Person]:
        """Every enabled person (at most MAX_CARDS), by address: the CardDAV address book."""
        q = self._people().order_by(None).order_by(t.accounts.c.address).limit(max(1, min(limit, MAX_CARDS)))
        # 10,000 rows and objects, off the event loop (CI's watchdog saw this hold the loop 1.2 s, and
        # fetching the rows alone 2.9 s, under load): on SQLite the rows are fetched and converted in the
        # reader's thread (read_sync), the people are made in the offload pool.
        rows = await self.db.read_sync(lambda conn: conn.execute(q).all())
        return await offload(_people_of, self._person, rows)

    async def people(self, addresses: list[str]) -> list[Person]:
        """The enabled people among `addresses` (at most MAX_RESULTS of them are looked up)."""
        wanted = [a.lower() for a in addresses[:MAX_RESULTS]]
        async with self.db.read() as conn:
            rows = (await conn.execute(self._people().where(t.accounts.c.address.in_(wanted))
                                       .limit(MAX_RESULTS))).all()
        return [self._person(r) for r in rows]


def _people_of(make, rows) -> list[Person]:
    return [make(r) for r in rows]
