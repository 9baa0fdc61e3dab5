"""Per-account mail settings in the central database: out-of-office auto-reply, delivery rules and signature.

Implementation notes
- Delivery asks `active()` for the set of accounts that have anything that acts
  at delivery (an out-of-office switched on, or a rule). It is cached and
  reloaded at most every ACTIVE_CACHE_SECONDS, and forgotten at once when this
  process changes a setting; so a message to an account with nothing set costs
  no statement. A change made by another process or node is seen within
  ACTIVE_CACHE_SECONDS.
- Only for accounts in that set does delivery read their settings, rules and
  aliases (`for_delivery`: one read, three SELECTs in one connection), and
  keeps them as long as the active set (so aliases added in the directory
  are seen within ACTIVE_CACHE_SECONDS too).
- `claim_reply` is the RFC 3834 §2 "once per sender per period" decision, made
  in one write transaction on the durable autoreply_sent rows: a concurrent
  claim for the same (account, sender) loses on the primary key.
- Saving the out-of-office settings forgets whom it replied to, so changed
  text is sent once more to everybody (RFC 3834 §2 leaves the period's start
  to the responder).
- Out-of-office dates are whole days in OOO_ZONE (China Standard Time: the
  offices this server is built for); the stored bounds are instants.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, timezone

from sqlalchemy import and_, delete, func, insert, select, union, update
from sqlalchemy.exc import IntegrityError

from . import schema as t
from .db import Database
from .directory import utcnow
from .errors import InvalidInput, NotFound
from .model import Account

ACTIVE_CACHE_SECONDS = 5.0
OOO_ZONE = timezone(timedelta(hours=8))
MAX_SUBJECT_CHARS = 255  # the column's width
MAX_TEXT_CHARS = 8000  # out-of-office text and signature
MAX_RULES = 50  # per account
MAX_RULE_VALUE = 255  # the column's width
DEFAULT_DAYS = 7
MAX_DAYS = 365
RULE_FIELDS = ("from", "to", "subject", "list-id")
RULE_ACTIONS = ("folder", "flag", "seen", "stop")
_KEYWORD = re.compile(r"[A-Za-z0-9_$.-]{1,64}")  # an IMAP keyword atom (RFC 3501 §9 flag-keyword), kept simple


def _utc(d: datetime | None) -> datetime | None:
    """Stored in UTC: SQLite keeps the wall time and drops the offset."""
    return d.astimezone(timezone.utc) if d is not None else None


def _aware(d: datetime | None) -> datetime | None:
    return d if d is None or d.tzinfo is not None else d.replace(tzinfo=timezone.utc)  # SQLite returns naive UTC


@dataclass(frozen=True)
class OutOfOffice:
    """An out-of-office auto-reply: on between `start` and `end` (either open), at most once per sender per `days`."""

    enabled: bool = False
    start: datetime | None = None
    end: datetime | None = None
    subject: str = ""
    body: str = ""
    days: int = DEFAULT_DAYS

    def active_at(self, now: datetime) -> bool:
        return (self.enabled and (self.start is None or self.start <= now)
                and (self.end is None or now < self.end))


def day_start(d: date) -> datetime:
    return datetime.combine(d, dtime(0, 0), OOO_ZONE)


def day_after(d: date) -> datetime:
    """The end bound of a period whose last day is `d` (the whole day included)."""
    return day_start(d) + timedelta(days=1)


@dataclass(frozen=True)
class Rule:
    """If `field` matches `value` (contains; list-id: equals), do `action` with `argument`."""

    id: int
    field: str
    value: str
    action: str
    argument: str = ""


@dataclass(frozen=True)
class DeliverySettings:
    """What delivery needs for one account: its out-of-office, its rules in order, its own addresses."""

    ooo: OutOfOffice
    rules: tuple[Rule, ...]
    addresses: frozenset[str]  # the account's address and the aliases that lead to it, lower case


def check_rule(field: str, value: str, action: str, argument: str) -> None:
    if field not in RULE_FIELDS:
        raise InvalidInput("unknown rule condition")
    if action not in RULE_ACTIONS:
        raise InvalidInput("unknown rule action")
    if not value.strip() or len(value) > MAX_RULE_VALUE:
        raise InvalidInput("a rule needs a value to look for")
    if action in ("folder", "flag") and (not argument.strip() or len(argument) > MAX_RULE_VALUE):
        raise InvalidInput("a rule that files or flags needs a folder or a flag")
    if action == "flag" and argument.lower() != "\\flagged" and not _KEYWORD.fullmatch(argument):
        raise InvalidInput("a flag is \\Flagged or a keyword of letters, digits and _ $ . -")


class MailSettings:
    """The settings tables behind a small API; `clock` is passed in (tests move time)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self._active: frozenset[int] | None = None
        self._loaded = 0.0
        self._known: dict[int, DeliverySettings] = {}  # of active accounts; emptied with the active set
        self._reloading: asyncio.Task | None = None  # the load of the active set under way, shared (not across a change)
        self._changes = 0  # counted by forget(): a load begun before a change is not kept

    # --- the delivery side -------------------------------------------------------------

    def forget(self) -> None:
        """A setting changed here: the next delivery reloads the set of active accounts."""
        self._active = None
        self._known = {}
        self._changes += 1
        self._reloading = None  # a load under way began before this change: the next caller starts another

    async def active(self) -> frozenset[int]:
        """Ids of accounts with an out-of-office switched on or a rule (cached, see the notes).

        The deliveries that find the set expired share one load (under a flow, the tens in flight
        at that moment each ran the query).
        """
        if self._active is not None and time.monotonic() - self._loaded <= ACTIVE_CACHE_SECONDS:
            return self._active
        task = self._reloading
        if task is None:
            task = self._reloading = asyncio.get_running_loop().create_task(self._load_active(self._changes),
                                                                            name="active set")
            task.add_done_callback(self._loaded_active)
        return await asyncio.shield(task)  # a caller that goes away leaves the load to the others

    async def _load_active(self, changes: int) -> frozenset[int]:
        s, r = t.mail_settings.c, t.mail_rules.c
        q = union(select(s.account_id).where(s.ooo_enabled.is_(True)), select(r.account_id))
        async with self.db.read() as conn:
            ids = frozenset((await conn.execute(q)).scalars().all())
        if changes == self._changes:  # nothing changed here meanwhile
            self._active, self._loaded, self._known = ids, time.monotonic(), {}
        return ids

    def _loaded_active(self, task: asyncio.Task) -> None:
        if self._reloading is task:
            self._reloading = None
        if not task.cancelled():
            task.exception()  # retrieved: its callers got it (if all went away, no "never retrieved" warning)

    async def for_delivery(self, accounts: list[Account]) -> dict[int, DeliverySettings]:
        """Settings, rules and own addresses of these accounts (cached with the active set; else one read)."""
        missing = [a for a in accounts if a.id not in self._known]
        if missing:
            self._known.update(await self._load(missing))
        return {a.id: self._known[a.id] for a in accounts}

    async def _load(self, accounts: list[Account]) -> dict[int, DeliverySettings]:
        ids = [a.id for a in accounts]
        s, r = t.mail_settings.c, t.mail_rules.c
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.mail_settings).where(s.account_id.in_(ids)))).all()
            rules = (await conn.execute(select(t.mail_rules).where(r.account_id.in_(ids))
                                        .order_by(r.account_id, r.position, r.id))).all()
            aliases = (await conn.execute(select(t.aliases.c.address, t.aliases.c.target).where(
                t.aliases.c.target.in_([a.address for a in accounts])))).all()
        oo = {row.account_id: _ooo(row) for row in rows}
        out = {}
        for a in accounts:
            addrs = {a.address.lower()} | {al.address.lower() for al in aliases if al.target == a.address}
            out[a.id] = DeliverySettings(oo.get(a.id, OutOfOffice()),
                                         tuple(_rule(x) for x in rules if x.account_id == a.id), frozenset(addrs))
        return out

    async def claim_reply(self, account_id: int, sender: str, days: int, now: datetime) -> bool:
        """True if `sender` was not auto-replied to by this account in the `days` days before `now` (and now is)."""
        c = t.autoreply_sent.c
        now = now.astimezone(timezone.utc)  # compared as stored (see _utc)
        sender = sender.lower()[:320]
        key = and_(c.account_id == account_id, c.sender == sender)
        try:
            async with self.db.write() as conn:
                res = await conn.execute(update(t.autoreply_sent).where(
                    and_(key, c.replied_at <= now - timedelta(days=days))).values(replied_at=now))
                if res.rowcount:
                    return True
                if (await conn.execute(select(c.replied_at).where(key))).first() is not None:
                    return False
                await conn.execute(insert(t.autoreply_sent).values(account_id=account_id, sender=sender,
                                                                   replied_at=now))
        except IntegrityError:  # another process claimed it first
            return False
        return True

    # --- the self-service side ---------------------------------------------------------

    async def _row(self, account_id: int):
        async with self.db.read() as conn:
            return (await conn.execute(select(t.mail_settings)
                                       .where(t.mail_settings.c.account_id == account_id))).first()

    async def out_of_office(self, account_id: int) -> OutOfOffice:
        row = await self._row(account_id)
        return _ooo(row) if row is not None else OutOfOffice()

    async def signature(self, account_id: int) -> str:
        row = await self._row(account_id)
        return row.signature if row is not None else ""

    async def _upsert(self, account_id: int, **values) -> None:
        values["updated_at"] = self.clock()
        c = t.mail_settings.c
        async with self.db.write() as conn:
            res = await conn.execute(update(t.mail_settings).where(c.account_id == account_id).values(**values))
            if not res.rowcount:
                await conn.execute(insert(t.mail_settings).values(account_id=account_id, **values))
            if "ooo_enabled" in values:  # new text, new period (see the notes)
                await conn.execute(delete(t.autoreply_sent).where(t.autoreply_sent.c.account_id == account_id))
        self.forget()

    async def set_out_of_office(self, account_id: int, ooo: OutOfOffice) -> None:
        if len(ooo.subject) > MAX_SUBJECT_CHARS or len(ooo.body) > MAX_TEXT_CHARS:
            raise InvalidInput("out-of-office text too long")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in ooo.subject):  # it becomes a header field (RFC 5322 §2.2)
            raise InvalidInput("the subject must be one line")
        if not 1 <= ooo.days <= MAX_DAYS:
            raise InvalidInput(f"days between replies must be 1 to {MAX_DAYS}")
        if ooo.start is not None and ooo.end is not None and ooo.end <= ooo.start:
            raise InvalidInput("the out-of-office period ends before it starts")
        if ooo.enabled and not ooo.body.strip():
            raise InvalidInput("an out-of-office reply needs a text")
        await self._upsert(account_id, ooo_enabled=ooo.enabled, ooo_start=_utc(ooo.start), ooo_end=_utc(ooo.end),
                           ooo_subject=ooo.subject, ooo_body=ooo.body, ooo_days=ooo.days)

    async def set_signature(self, account_id: int, text: str) -> None:
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput("signature too long")
        await self._upsert(account_id, signature=text.replace("\r\n", "\n"))

    async def rules(self, account_id: int) -> list[Rule]:
        r = t.mail_rules.c
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.mail_rules).where(r.account_id == account_id)
                                       .order_by(r.position, r.id))).all()
        return [_rule(x) for x in rows]

    async def add_rule(self, account_id: int, field: str, value: str, action: str, argument: str = "") -> Rule:
        check_rule(field, value, action, argument)
        r = t.mail_rules.c
        async with self.db.write() as conn:
            n, last = (await conn.execute(select(func.count(), func.max(r.position))
                                          .where(r.account_id == account_id))).one()
            if n >= MAX_RULES:
                raise InvalidInput(f"at most {MAX_RULES} rules")
            res = await conn.execute(insert(t.mail_rules).values(
                account_id=account_id, position=(last or 0) + 1, field=field, value=value.strip(), action=action,
                argument=argument.strip()))
            rid = res.inserted_primary_key[0]
        self.forget()
        return Rule(rid, field, value.strip(), action, argument.strip())

    async def remove_rule(self, account_id: int, rule_id: int) -> None:
        """Another account's rule id is NotFound, as an unknown one is."""
        r = t.mail_rules.c
        async with self.db.write() as conn:
            res = await conn.execute(delete(t.mail_rules).where(and_(r.id == rule_id, r.account_id == account_id)))
        if not res.rowcount:
            raise NotFound("no such rule")
        self.forget()

    async def move_rule(self, account_id: int, rule_id: int, up: bool) -> None:
        """Swap the rule with its neighbour above (`up`) or below; NotFound for another account's rule."""
        rules = await self.rules(account_id)
        i = next((k for k, x in enumerate(rules) if x.id == rule_id), None)
        if i is None:
            raise NotFound("no such rule")
        j = i - 1 if up else i + 1
        if not 0 <= j < len(rules):
            return
        order = [x.id for x in rules]
        order[i], order[j] = order[j], order[i]
        r = t.mail_rules.c
        async with self.db.write() as conn:
            for pos, rid in enumerate(order, 1):
                await conn.execute(update(t.mail_rules).where(and_(r.id == rid, r.account_id == account_id))
                                   .values(position=pos))
        self.forget()


async def signature_for(settings: MailSettings, account: Account) -> str:
    """The account's plain-text signature ("" when none), for the compose form."""
    return (await settings.signature(account.id)).strip("\n")


def _ooo(row) -> OutOfOffice:
    return OutOfOffice(bool(row.ooo_enabled), _aware(row.ooo_start), _aware(row.ooo_end), row.ooo_subject,
                       row.ooo_body, row.ooo_days)


def _rule(row) -> Rule:
    return Rule(row.id, row.field, row.value, row.action, row.argument)
