"""Department leaders, who approve their department's held mail (issue 13), and the tree they are found in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from . import schema as t
from .addresses import normalise_address
from .db import Database
from .errors import InvalidInput, NotFound
from .model import Department

MAX_DEPARTMENTS = 5000  # departments read at most for the tree (mailboxes.admindir reads as many)
MAX_DEPTH = 64  # parents walked at most (the tree has no cycles; this bounds a damaged one)


@dataclass(frozen=True)
class Node:
    """One department as the approver search sees it."""

    id: int
    parent_id: int | None
    leader: str | None  # an enabled leader's address; a disabled or removed one is None


def departments_with_leaders():
    """SELECT of departments with their leader's address (None: no leader or a removed one)."""
    leader = t.accounts.alias("leader")
    return select(t.departments, leader.c.address.label("leader_address")).select_from(
        t.departments.outerjoin(leader, leader.c.id == t.departments.c.leader_id))


def department(row) -> Department:
    return Department(row.id, row.code, row.name, row.parent_id, row.kind, row.leader_address)


def chain(tree: dict[int, Node], department_id: int | None) -> list[Node]:
    """The department and its parents, nearest first (pure; bounded by MAX_DEPTH)."""
    out: list[Node] = []
    seen: set[int] = set()
    while department_id is not None and department_id in tree and department_id not in seen \
            and len(out) < MAX_DEPTH:
        seen.add(department_id)
        out.append(tree[department_id])
        department_id = tree[department_id].parent_id
    return out


LISTENERS = "leaders.listeners"  # Database.memo key: callbacks told after a leader was set in this process


def on_leader_change(db: Database, callback: Callable[[], None]) -> None:
    """Call `callback` after each leader set or cleared through this process (other processes: not told)."""
    db.memo.setdefault(LISTENERS, []).append(callback)  # type: ignore[union-attr]


class DepartmentLeaders:
    """Set a department's leader and read the tree of leaders, over the central database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def set(self, code: str, address: str | None) -> Department:
        """Make an account (of any department) the leader, or clear it with None."""
        code = code.strip().lower()[:64]
        async with self.db.write() as conn:
            leader_id = None
            if address:
                row = (await conn.execute(select(t.accounts.c.id, t.accounts.c.enabled).where(
                    t.accounts.c.address == normalise_address(address)))).first()
                if row is None:
                    raise NotFound(f"no account {address}")
                if not row.enabled:
                    raise InvalidInput(f"account {address} is disabled")
                leader_id = row.id
            done = (await conn.execute(update(t.departments).where(t.departments.c.code == code)
                                       .values(leader_id=leader_id))).rowcount
            if not done:
                raise NotFound(f"no department {code}")
            row = (await conn.execute(departments_with_leaders().where(t.departments.c.code == code))).first()
        for callback in self.db.memo.get(LISTENERS, ()):  # type: ignore[union-attr]
            callback()
        return department(row)

    async def tree(self) -> dict[int, Node]:
        """Every department with its enabled leader, by id."""
        leader = t.accounts.alias("leader")
        q = select(t.departments.c.id, t.departments.c.parent_id, leader.c.address, leader.c.enabled).select_from(
            t.departments.outerjoin(leader, leader.c.id == t.departments.c.leader_id)).limit(MAX_DEPARTMENTS)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return {r.id: Node(r.id, r.parent_id, r.address if r.enabled else None) for r in rows}


def leader_for(tree: dict[int, Node], department_id: int | None, sender: str) -> str | None:
    """The leader who approves mail the sender's department holds: its own, else the nearest parent's.

    A leader never approves their own mail: when the sender leads a department on the
    way up, that department is passed over. None: nobody on the way up, the office decides.
    """
    me = sender.strip().lower()
    return next((n.leader for n in chain(tree, department_id) if n.leader and n.leader != me), None)


def leads(tree: dict[int, Node], address: str) -> bool:
    """Does this address lead (enabled) any department now?"""
    me = address.strip().lower()
    return any(n.leader == me for n in tree.values())
