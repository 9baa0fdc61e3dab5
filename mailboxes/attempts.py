"""Login attempts in flight and failed ones, as rows in the directory database shared by every process and node.

Implementation notes
- The failed-login throttle (mailserver/throttle.py) decides; this module
  only keeps its rows, so guessing spread over worker processes or nodes
  meets one limit. Every call is one statement (a successful settle two, and
  `begin` on PostgreSQL takes its locks first, in one transaction), so a
  check stays cheap.
- A row counts against its client network (`ip_key`) and, when the client
  named one, its account (`account_key`). `failed` false: an attempt in
  flight (a password check running); true: a failure at `at`.
- `begin` inserts an attempt only while both keys have room (failures in the
  window plus attempts in flight below their limits), in the same statement.
  On SQLite writers are serialised (BEGIN IMMEDIATE), so the limit is exact
  across processes; on PostgreSQL (READ COMMITTED) two transactions would
  each miss the other's new row, so `begin` first takes a transaction-level
  advisory lock on each key (in one order): exact across nodes too.
- Times are epoch seconds from the callers' wall clocks (nodes keep NTP time).
  An attempt in flight older than `flight_s` is taken to belong to a process
  that died and no longer counts; `prune` deletes rows nothing counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, false, func, insert, literal, or_, select, text, true, update

from . import schema as t
from .db import Database

__all__ = ["Attempt", "LoginAttempts"]

_c = t.login_attempts.c
ADVISORY_NAMESPACE = 0x504C  # the first key of PostgreSQL advisory locks on login keys ("PL")


@dataclass(frozen=True)
class Attempt:
    ip_key: str
    account_key: str | None
    at: float
    failed: bool


def _live(failed_since: float, flight_since: float):
    """Rows that still count: failures inside the window, attempts in flight not yet stale."""
    return or_(and_(_c.failed == true(), _c.at > failed_since), and_(_c.failed == false(), _c.at > flight_since))


class LoginAttempts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def recent(self, ip_key: str, account_key: str | None, *, failed_since: float, flight_since: float,
                     cap: int) -> list[Attempt]:
        """The newest `cap` rows that still count against either key."""
        keys = _c.ip_key == ip_key if account_key is None else or_(_c.ip_key == ip_key,
                                                                   _c.account_key == account_key)
        q = (select(_c.ip_key, _c.account_key, _c.at, _c.failed).where(and_(keys, _live(failed_since, flight_since)))
             .order_by(_c.at.desc()).limit(cap))
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [Attempt(r.ip_key, r.account_key, float(r.at), bool(r.failed)) for r in rows]

    async def begin(self, ip_key: str, account_key: str | None, now: float, *, failed_since: float,
                    flight_since: float, ip_limit: int, account_limit: int) -> int | None:
        """Count an attempt in flight if both keys have room; its id, or None (no room)."""
        live = _live(failed_since, flight_since)
        room = select(func.count()).where(and_(_c.ip_key == ip_key, live)).scalar_subquery() < ip_limit
        if account_key is not None:
            room = and_(room, select(func.count()).where(and_(_c.account_key == account_key, live))
                        .scalar_subquery() < account_limit)
        row = select(literal(ip_key), literal(account_key, t.login_attempts.c.account_key.type), literal(now),
                     literal(False)).where(room)
        q = insert(t.login_attempts).from_select(["ip_key", "account_key", "at", "failed"], row).returning(_c.id)
        async with self.db.write() as conn:
            if conn.dialect.name == "postgresql":
                # Count and insert under the keys' transaction locks, taken in one order (no deadlock).
                for key in sorted({f"ip:{ip_key}", *([f"account:{account_key}"] if account_key else [])}):
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:k))"),
                                       {"ns": ADVISORY_NAMESPACE, "k": key})
            return (await conn.execute(q)).scalar()

    async def settle(self, attempt_id: int, *, ok: bool | None, account_key: str | None, now: float) -> None:
        """End an attempt (one transaction): a failure stays as one; a success clears the account's failures."""
        async with self.db.write() as conn:
            if ok is False:
                await conn.execute(update(t.login_attempts).where(_c.id == attempt_id).values(failed=True, at=now))
                return
            await conn.execute(delete(t.login_attempts).where(_c.id == attempt_id))
            if ok and account_key is not None:
                await conn.execute(self._forget_account(account_key))

    @staticmethod
    def _forget_account(account_key: str):
        # The failures keep counting against their network: only their account is taken off.
        return update(t.login_attempts).where(and_(_c.account_key == account_key, _c.failed == true())).values(
            account_key=None)

    async def fail(self, ip_key: str, account_key: str | None, now: float) -> None:
        """Count a failure that no attempt of ours was in flight for (a shared answer)."""
        async with self.db.write() as conn:
            await conn.execute(insert(t.login_attempts).values(ip_key=ip_key, account_key=account_key, at=now,
                                                               failed=True))

    async def clear_account(self, account_key: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(self._forget_account(account_key))

    async def prune(self, *, failed_since: float, flight_since: float) -> int:
        """Delete the rows nothing counts any more; returns how many."""
        async with self.db.write() as conn:
            res = await conn.execute(delete(t.login_attempts).where(or_(
                and_(_c.failed == true(), _c.at <= failed_since), and_(_c.failed == false(), _c.at <= flight_since))))
        return res.rowcount or 0
