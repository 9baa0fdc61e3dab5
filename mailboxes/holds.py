"""Legal holds: an account, a department or a saved search whose messages no deletion path may remove.

A hold is checked where messages leave the store (Store._remove: EXPUNGE, UID EXPUNGE, MOVE's
second half, webmail delete, retention; Store._drop_folder: DELETE of a folder, account removal).
Held messages are kept in place and the caller is told which were kept; nothing is hidden or
copied aside. Moving to a year archive is not a deletion: the message keeps existing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from sqlalchemy import insert, select, update

from . import schema as t
from .db import Database
from .errors import InvalidInput, NotFound
from .mime import ParsedMessage
from .model import Account, FolderRef

KINDS = ("account", "department", "search")
CRITERIA = ("from", "subject", "since", "before", "text")  # a saved search: all given ones must match
MAX_CRITERION = 200  # characters of one criterion


@dataclass(frozen=True)
class LegalHold:
    id: int
    name: str
    kind: str
    account_id: int | None
    department_code: str | None
    criteria: dict = field(default_factory=dict)
    placed_by: str = ""
    placed_at: datetime | None = None
    released_by: str | None = None
    released_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"legal hold #{self.id} ({self.name})"

    def covers_account(self, account: Account | None) -> bool:
        """Whether this hold's scope reaches the account's mail (a search: only if it also matches)."""
        if account is None:
            return self.kind == "search" and self.account_id is None and self.department_code is None
        if self.account_id is not None and self.account_id != account.id:
            return False
        if self.department_code is not None and self.department_code != account.department_code:
            return False
        return True


def _date(value: str, name: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), timezone.utc)
    except ValueError:
        raise InvalidInput(f"{name} must be a date YYYY-MM-DD") from None


def check_criteria(criteria: dict) -> dict:
    out = {}
    for k, v in criteria.items():
        if v in (None, ""):
            continue
        if k not in CRITERIA:
            raise InvalidInput(f"unknown search criterion {k!r} (known: {', '.join(CRITERIA)})")
        v = str(v)
        if len(v) > MAX_CRITERION:
            raise InvalidInput(f"{k} is longer than {MAX_CRITERION} characters")
        if k in ("since", "before"):
            _date(v, k)
        out[k] = v
    if not out:
        raise InvalidInput("a search hold needs at least one criterion")
    return out


def _row(r) -> LegalHold:
    return LegalHold(r.id, r.name, r.kind, r.account_id, r.department_code,
                     json.loads(r.criteria) if r.criteria else {}, r.placed_by, r.placed_at, r.released_by,
                     r.released_at)


class Holds:
    """The holds table in the central database."""

    def __init__(self, central: Database) -> None:
        self.db = central

    async def add(self, name: str, *, actor: str, account: Account | None = None, department: str | None = None,
                  criteria: dict | None = None) -> LegalHold:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("a hold needs a name of 1 to 200 characters")
        crit = check_criteria(criteria) if criteria else {}
        kind = "search" if crit else "account" if account is not None else "department" if department else None
        if kind is None:
            raise InvalidInput("a hold names an account, a department or search criteria")
        if kind == "account" and department:
            raise InvalidInput("a hold names an account or a department, not both")
        async with self.db.write() as conn:
            if department:
                have = (await conn.execute(select(t.departments.c.id)
                                           .where(t.departments.c.code == department))).first()
                if have is None:
                    raise NotFound(f"no department {department}")
            res = await conn.execute(insert(t.legal_holds).values(
                name=name, kind=kind, account_id=account.id if account else None, department_code=department or None,
                criteria=json.dumps(crit, ensure_ascii=False) if crit else "", placed_by=actor,
                placed_at=datetime.now(timezone.utc)))
            hid = res.inserted_primary_key[0]
            return _row((await conn.execute(select(t.legal_holds).where(t.legal_holds.c.id == hid))).first())

    async def release(self, hold_id: int, *, actor: str) -> LegalHold:
        async with self.db.write() as conn:
            r = (await conn.execute(select(t.legal_holds).where(t.legal_holds.c.id == hold_id))).first()
            if r is None:
                raise NotFound(f"no legal hold #{hold_id}")
            if r.released_at is not None:
                raise InvalidInput(f"legal hold #{hold_id} was already released")
            await conn.execute(update(t.legal_holds).where(t.legal_holds.c.id == hold_id).values(
                released_by=actor, released_at=datetime.now(timezone.utc)))
            return _row((await conn.execute(select(t.legal_holds).where(t.legal_holds.c.id == hold_id))).first())

    async def list(self, *, include_released: bool = False) -> list[LegalHold]:
        q = select(t.legal_holds).order_by(t.legal_holds.c.id)
        if not include_released:
            q = q.where(t.legal_holds.c.released_at.is_(None))
        return [_row(r) for r in await self.db.read_sync(lambda conn: conn.execute(q).all())]

    async def active(self) -> list[LegalHold]:
        return await self.list()


def matches(hold: LegalHold, internal_date: datetime, parsed: ParsedMessage | None, text_hit: bool) -> bool:
    """Whether one message matches a search hold's criteria (all given ones; substrings, case-insensitive)."""
    c = hold.criteria
    if "since" in c or "before" in c:
        d = internal_date if internal_date.tzinfo else internal_date.replace(tzinfo=timezone.utc)
        if "since" in c and d < _date(c["since"], "since"):
            return False
        if "before" in c and d >= _date(c["before"], "before"):
            return False
    if "text" in c and not text_hit:
        return False
    if ("from" in c or "subject" in c) and parsed is None:
        return True  # unreadable parse: keep it (a hold errs on the side of keeping)
    if "from" in c:
        needle = c["from"].casefold()
        addrs = [f"{a.name_decoded or ''} {a.mailbox or ''}@{a.host or ''}".casefold() for a in parsed.envelope.from_]
        if not any(needle in a for a in addrs):
            return False
    if "subject" in c and c["subject"].casefold() not in (parsed.envelope.subject_decoded or "").casefold():
        return False
    return True


async def held_uids(store, ref: FolderRef, holds: Iterable[LegalHold], rows: list) -> dict[int, LegalHold]:
    """UID -> the (first) hold keeping it, among `rows` (uid, blob_id, internal_date) of folder `ref`.

    `holds` are those already known to cover the folder's owner (LegalHold.covers_account).
    """
    out: dict[int, LegalHold] = {}
    searches = []
    for h in holds:
        if h.kind != "search":
            return {r.uid: h for r in rows}
        searches.append(h)
    if not searches or not rows:
        return out
    parsed: dict[int, ParsedMessage | None] = {}
    if any("from" in h.criteria or "subject" in h.criteria for h in searches):
        for bid, js in (await store.parsed(ref.partition, [r.blob_id for r in rows])).items():
            try:
                parsed[bid] = ParsedMessage.from_json(js)
            except (ValueError, KeyError, TypeError):
                parsed[bid] = None
    for h in searches:
        hits: set[int] | None = None
        if "text" in h.criteria:
            hits = await store.search_text(ref, None, h.criteria["text"])
        for r in rows:
            if r.uid in out:
                continue
            hit = hits is None or r.uid in hits  # no indexable terms: every message counts as a hit
            if matches(h, r.internal_date, parsed.get(r.blob_id), hit):
                out[r.uid] = h
    return out
