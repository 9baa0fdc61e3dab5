"""Bounded, department-scoped directory reads and the edits the admin console needs beyond directory.py.

Implementation notes
- Every list is one page (LIMIT/OFFSET, at most MAX_PAGE rows) with a count, filtered in SQL;
  nothing here loads a whole table of accounts, groups or aliases.
- `departments` arguments are a set of department ids (a department admin's subtree) or None
  (everything, for an admin). An empty set matches nothing.
- The department tree is read whole (at most MAX_DEPARTMENTS rows) to compute subtrees.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update

from . import schema as t
from .addresses import normalise_address
from .directory import Directory
from .errors import InvalidInput, NotFound
from .leaders import department, departments_with_leaders
from .model import Account, Department, Role

MAX_PAGE = 200  # rows per page at most
MAX_OFFSET = 1_000_000_000  # paging offsets beyond this are refused (kept inside a 64-bit OFFSET)
MAX_QUERY_CHARS = 100  # search text used at most
MAX_DEPARTMENTS = 5000  # departments read at most when computing a subtree

UNSET = object()  # "leave this field as it is"
CARD_FIELDS = frozenset({"display_name", "department_id", "enabled"})  # what the address book shows of an account


@dataclass(frozen=True)
class Page:
    """One page of rows and how many match in all."""

    total: int
    offset: int
    items: list


@dataclass(frozen=True)
class GroupRow:
    address: str
    name: str
    post_policy: str
    department_id: int | None


def _bounded(offset: int, limit: int) -> tuple[int, int]:
    if not 0 <= offset <= MAX_OFFSET or not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"0 <= offset <= {MAX_OFFSET} and 1 <= limit <= {MAX_PAGE}")
    return offset, limit


def _matching(query: str, *cols):
    """Any of `cols` contains the (lower-cased) query, None for an empty query; LIKE wildcards escaped."""
    q = query.strip()[:MAX_QUERY_CHARS].lower()
    if not q:
        return None
    return or_(*(func.lower(c).contains(q, autoescape=True) for c in cols))


def subtree(departments: list[Department], root_id: int) -> frozenset[int]:
    """`root_id` and every department below it (pure; cycles cannot loop)."""
    children: dict[int | None, list[int]] = {}
    for d in departments:
        children.setdefault(d.parent_id, []).append(d.id)
    out, todo = set(), [root_id]
    while todo:
        d = todo.pop()
        if d not in out:
            out.add(d)
            todo.extend(children.get(d, ()))
    return frozenset(out)


class DirectoryAdmin:
    """What the admin console and API read and change, over the Directory's database."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.db = directory.db

    async def departments(self) -> list[Department]:
        async with self.db.read() as conn:
            rows = (await conn.execute(departments_with_leaders().order_by(t.departments.c.code)
                                       .limit(MAX_DEPARTMENTS))).all()
        return [department(r) for r in rows]

    async def department(self, code: str) -> Department:
        async with self.db.read() as conn:
            r = (await conn.execute(departments_with_leaders()
                                    .where(t.departments.c.code == code.strip().lower()[:64]))).first()
        if r is None:
            raise NotFound(f"no department {code}")
        return department(r)

    async def subtree(self, root_id: int) -> frozenset[int]:
        return subtree(await self.departments(), root_id)

    async def rename_department(self, code: str, name: str) -> Department:
        dept = await self.department(code)
        async with self.db.write() as conn:
            await conn.execute(update(t.departments).where(t.departments.c.id == dept.id)
                               .values(name=name, updated_at=self.directory.clock()))
        return await self.department(code)

    # --- accounts ------------------------------------------------------------------

    async def search_accounts(self, *, query: str = "", departments: Collection[int] | None = None,
                              offset: int = 0, limit: int = 50) -> Page:
        """Accounts by address whose address or name contains `query`, in `departments` (None: all)."""
        offset, limit = _bounded(offset, limit)
        conds = []
        match = _matching(query, t.accounts.c.address, t.accounts.c.display_name)
        if match is not None:
            conds.append(match)
        if departments is not None:
            conds.append(t.accounts.c.department_id.in_(list(departments)))
        q = self.directory._account_select().where(*conds)
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(t.accounts).where(*conds))).scalar_one()
            rows = (await conn.execute(q.order_by(t.accounts.c.address).offset(offset).limit(limit))).all()
        return Page(total, offset, [self.directory._account(r) for r in rows])

    async def update_account(self, address: str, *, display_name=UNSET, department=UNSET, role=UNSET,
                             enabled=UNSET, quota_bytes=UNSET, quota_messages=UNSET) -> Account:
        """Change any of an account's name, department (a code or None), role, enabled, quotas: one UPDATE."""
        acct = await self.directory.account(address)
        values = {k: v for k, v in (("display_name", display_name), ("enabled", enabled),
                                    ("quota_bytes", quota_bytes), ("quota_messages", quota_messages))
                  if v is not UNSET}
        if any(values.get(k, 0) < 0 for k in ("quota_bytes", "quota_messages")):
            raise InvalidInput("quota cannot be negative")
        if role is not UNSET:
            values["role"] = Role(role).value
        async with self.db.write() as conn:
            if department is not UNSET:
                values["department_id"] = None if department is None else await self._department_id(conn, department)
            if CARD_FIELDS.intersection(values):
                values["updated_at"] = self.directory.clock()  # the vCard's REV
            if values:
                await conn.execute(update(t.accounts).where(t.accounts.c.id == acct.id).values(**values))
        return await self.directory.account_by_id(acct.id)

    @staticmethod
    async def _department_id(conn, code: str) -> int:
        row = (await conn.execute(select(t.departments.c.id)
                                  .where(t.departments.c.code == code.strip().lower()[:64]))).first()
        if row is None:
            raise NotFound(f"no department {code}")
        return row.id

    # --- groups -----------------------------------------------------------------------

    async def groups(self, *, query: str = "", departments: Collection[int] | None = None,
                     offset: int = 0, limit: int = 50) -> Page:
        offset, limit = _bounded(offset, limit)
        conds = []
        match = _matching(query, t.groups.c.address, t.groups.c.name)
        if match is not None:
            conds.append(match)
        if departments is not None:
            conds.append(t.groups.c.department_id.in_(list(departments)))
        c = t.groups.c
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(t.groups).where(*conds))).scalar_one()
            rows = (await conn.execute(select(c.address, c.name, c.post_policy, c.department_id).where(*conds)
                                       .order_by(c.address).offset(offset).limit(limit))).all()
        return Page(total, offset, [GroupRow(r.address, r.name, r.post_policy, r.department_id) for r in rows])

    async def group_row(self, address: str) -> GroupRow:
        c = t.groups.c
        async with self.db.read() as conn:
            r = (await conn.execute(select(c.address, c.name, c.post_policy, c.department_id)
                                    .where(c.address == normalise_address(address)))).first()
        if r is None:
            raise NotFound(f"no group {address}")
        return GroupRow(r.address, r.name, r.post_policy, r.department_id)

    async def remove_group(self, address: str) -> None:
        g = await self.group_row(address)
        async with self.db.write() as conn:
            gid = (await conn.execute(select(t.groups.c.id).where(t.groups.c.address == g.address))).scalar_one()
            await conn.execute(t.group_members.delete().where(t.group_members.c.group_id == gid))
            await conn.execute(t.group_posters.delete().where(t.group_posters.c.group_id == gid))
            await conn.execute(t.groups.delete().where(t.groups.c.id == gid))

    # --- aliases ----------------------------------------------------------------------

    async def aliases(self, *, query: str = "", departments: Collection[int] | None = None,
                      offset: int = 0, limit: int = 50) -> Page:
        """(alias, target, target's department id) by alias; a department's aliases point to its accounts."""
        offset, limit = _bounded(offset, limit)
        conds = []
        match = _matching(query, t.aliases.c.address, t.aliases.c.target)
        if match is not None:
            conds.append(match)
        if departments is not None:
            conds.append(t.accounts.c.department_id.in_(list(departments)))
        joined = t.aliases.outerjoin(t.accounts, t.accounts.c.address == t.aliases.c.target)
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(joined).where(*conds))).scalar_one()
            rows = (await conn.execute(select(t.aliases.c.address, t.aliases.c.target, t.accounts.c.department_id)
                                       .select_from(joined).where(*conds).order_by(t.aliases.c.address)
                                       .offset(offset).limit(limit))).all()
        return Page(total, offset, [(r.address, r.target, r.department_id) for r in rows])

    async def alias(self, address: str) -> tuple[str, str, int | None]:
        joined = t.aliases.outerjoin(t.accounts, t.accounts.c.address == t.aliases.c.target)
        async with self.db.read() as conn:
            r = (await conn.execute(select(t.aliases.c.address, t.aliases.c.target, t.accounts.c.department_id)
                                    .select_from(joined)
                                    .where(t.aliases.c.address == normalise_address(address)))).first()
        if r is None:
            raise NotFound(f"no alias {address}")
        return r.address, r.target, r.department_id
