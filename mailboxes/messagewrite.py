"""STORE and EXPUNGE as one synchronous write transaction each, run whole in the database thread (Database.write_sync).

Implementation notes
- Through the async connection every statement of a STORE crossed to aiosqlite's
  thread and back (execute, fetch, commit: a dozen hops for one flag on one
  message); here the whole command is one function that `Database.write_sync`
  runs in the writer connection's thread, one hop per command, as delivery does
  (mailboxes/deliverywrite.py). On PostgreSQL it runs under `run_sync`.
- The statements are those the async versions ran, in the same order: the
  folder row first (its HIGHESTMODSEQ moves, RFC 7162 §3.1: one new MODSEQ per
  command and folder), so concurrent writers on other nodes serialise on it.
- Nothing here publishes on the bus: the caller does that after the commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from sqlalchemy import and_, bindparam, delete, insert, or_, select, text, update
from sqlalchemy.engine import Connection

from . import cleanup, identity, pgbus
from . import schema as t
from .changes import FolderChanged
from .errors import NotFound
from .model import Flag, FolderRef, MessageMeta

_NO_KEYWORDS: frozenset[str] = frozenset()
# MessageMeta's field order. On SQLite the date comes back as text (parsed by _aware).
META_COLS = (t.messages.c.uid, t.messages.c.modseq, t.messages.c.flags, t.messages.c.keywords,
             t.messages.c.internal_date, t.messages.c.size, t.messages.c.blob_id)


def aware(d: datetime | str) -> datetime:
    """Stored times are UTC; SQLite hands them back naive (or as text on the fast path)."""
    if isinstance(d, str):
        d = datetime.fromisoformat(d)
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def meta(r) -> MessageMeta:
    """A row of META_COLS as MessageMeta."""
    uid, modseq, flags, kw, when, size, blob_id = r
    return MessageMeta(uid, modseq, flags, frozenset(kw.split()) if kw else _NO_KEYWORDS, aware(when), size,
                       blob_id)


def uid_ranges(uids: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for u in sorted(set(uids)):
        if out and u == out[-1][1] + 1:
            out[-1] = (out[-1][0], u)
        else:
            out.append((u, u))
    return out


UID_RANGES_PER_STATEMENT = 250  # ranges one STORE/EXPUNGE statement names; a larger set takes several statements
# in one transaction. Each BETWEEN is a level of SQLite's expression tree (at most 1000 deep) and each UID a bind
# parameter (asyncpg takes at most 32,767). Measured (STORE on 20,000 messages, SQLite / PostgreSQL): 1:* takes
# 150 / 330 ms; 6,667 two-UID ranges 100 / 340 ms; 1,111 ranges of 17 UIDs 195 / 450 ms (500 per statement: 260 ms).
SHORT_RANGE = 16  # ranges of fewer UIDs go into the IN list as values: at most 250 x 16 = 4,000 parameters


def _range_condition(ranges: list[tuple[int, int]]):
    # A short range is cheaper as values of the IN list (a lookup) than as a BETWEEN each row is tested against.
    singles = [u for a, b in ranges if b - a < SHORT_RANGE for u in range(a, b + 1)]
    spans = [t.messages.c.uid.between(a, b) for a, b in ranges if b - a >= SHORT_RANGE]
    conds = spans + ([t.messages.c.uid.in_(singles)] if singles else [])
    if len(conds) > 1:
        # The outer bound lets the (folder_id, uid) index narrow the scan to this chunk's stretch
        # of the folder; without it every row of the folder is tested against every range.
        return and_(t.messages.c.uid.between(ranges[0][0], ranges[-1][1]), or_(*conds))
    return or_(*conds) if conds else text("1 = 0")


def uid_condition(uids: Iterable[int]):
    """A WHERE clause for a UID set, as ranges (a STORE on 1:* is one BETWEEN, not 10,000 values).

    Only for sets of a bounded number of ranges (PAGE_UID_RANGES); any set goes through uid_conditions.
    """
    return _range_condition(uid_ranges(uids))


def uid_conditions(uids: Iterable[int]) -> list:
    """WHERE clauses that together name a UID set, each of at most UID_RANGES_PER_STATEMENT ranges.

    A client may name thousands of separate ranges (``UID STORE 1:2,4:5,7:8,...``; the command line
    bounds them, see session.max_line); one OR of them all is deeper than SQLite allows. Each clause
    is a statement of its own in the caller's transaction: the work stays set-based, memory and
    statement size stay bounded.
    """
    ranges = uid_ranges(uids)
    return [_range_condition(ranges[i:i + UID_RANGES_PER_STATEMENT])
            for i in range(0, len(ranges), UID_RANGES_PER_STATEMENT)]


def store_flags_sync(conn: Connection, node: str, ref: FolderRef, uids: list[int], mode: str, flags: int,
                     keywords: frozenset[str], unchanged_since: int | None
                     ) -> tuple[list[MessageMeta], list[int], FolderChanged | None, list[int]]:
    """STORE in one transaction: (messages whose flags changed, UIDs failing UNCHANGEDSINCE, the event or None,
    read-status copy ids (readstatus.py) this STORE made \\Seen — none for untracked mail)."""
    c = t.messages.c
    hm = conn.execute(update(t.folders).where(identity.names_folder(ref))
                      .values(highestmodseq=t.folders.c.highestmodseq + 1)
                      .returning(t.folders.c.highestmodseq)).scalar()
    if hm is None:
        raise NotFound("folder no longer exists")
    wheres = [and_(c.folder_id == ref.id, cond) for cond in uid_conditions(uids)]
    failed: list[int] = []
    read_now: list[int] = []
    if unchanged_since is not None:  # RFC 7162 §3.1.3
        for where in wheres:
            failed += conn.execute(select(c.uid).where(and_(where, c.modseq > unchanged_since))).scalars().all()
        wheres = [and_(where, c.modseq <= unchanged_since) for where in wheres]
    if not keywords and mode != "replace":
        # Fast path, system flags only: one UPDATE, rows that change only.
        if mode == "add":
            new, changed = c.flags.op("|")(flags), (c.flags.op("&")(flags)) != flags
        else:
            new, changed = c.flags.op("&")(~flags & 0xFF), (c.flags.op("&")(flags)) != 0
        rows = [r for where in wheres  # one UPDATE per chunk of ranges, rows that change only
                for r in conn.execute(update(t.messages).where(and_(where, changed))
                                      .values(flags=new, modseq=hm).returning(*META_COLS, c.track_id)).all()]
        changed_metas = [meta(r[:7]) for r in rows]
        if mode == "add" and flags & Flag.SEEN:  # rows that changed and so just became \Seen
            read_now = [r.track_id for r in rows if r.track_id is not None]
    else:
        changed_metas = []
        updates = []
        for r in [r for where in wheres for r in conn.execute(select(c.id, c.track_id, *META_COLS).where(where))]:
            kw = frozenset(r.keywords.split()) if r.keywords else frozenset()
            if mode == "add":
                nf, nk = r.flags | flags, kw | keywords
            elif mode == "remove":
                nf, nk = r.flags & ~flags, kw - keywords
            else:
                nf, nk = flags, keywords
            if nf & Flag.SEEN and not r.flags & Flag.SEEN and r.track_id is not None:
                read_now.append(r.track_id)
            if nf != r.flags or nk != kw:
                updates.append({"b_id": r.id, "flags": nf, "keywords": " ".join(sorted(nk)), "modseq": hm})
                changed_metas.append(MessageMeta(r.uid, hm, nf, nk, aware(r.internal_date), r.size, r.blob_id))
        if updates:
            conn.execute(update(t.messages).where(c.id == bindparam("b_id")).values(
                flags=bindparam("flags"), keywords=bindparam("keywords"), modseq=bindparam("modseq")), updates)
    event = FolderChanged(ref, hm, "flags") if changed_metas else None
    if event is not None:
        pgbus.notify_sync(conn, node, [event])  # delivered at commit only
    return changed_metas, failed, event, read_now


def expunge_sync(conn: Connection, node: str, ref: FolderRef, uids: list[int] | None, deleted_only: bool
                 ) -> tuple[list[int], FolderChanged | None, cleanup.Released]:
    """EXPUNGE in one transaction: (UIDs removed, the event or None, blobs released for cleanup.finish)."""
    c = t.messages.c
    where = c.folder_id == ref.id
    if deleted_only or uids is None:
        where = and_(where, c.flags.op("&")(int(Flag.DELETED)) != 0)
    wheres = [where] if uids is None else [and_(where, cond) for cond in uid_conditions(uids)]
    gone, event, released = remove_sync(conn, node, ref, wheres)
    return sorted(g.uid for g in gone), event, released


class HoldsActive(Exception):
    """remove_sync found an active legal hold in its own database: the caller checks the messages first."""


def remove_sync(conn: Connection, node: str, ref: FolderRef, wheres: list, *, check_holds: bool = False
                ) -> tuple[list, FolderChanged | None, cleanup.Released]:
    """Delete the messages the `wheres` name (together) from one folder: (rows gone with uid, size, blob_id,
    flags; the event or None; blobs released). Tombstones, usage and the blob check follow the rows deleted.

    ``check_holds`` (the folder is in the central database): raise HoldsActive before changing anything
    if any legal hold is active, so that with none (the usual case) an EXPUNGE stays one hand-off.
    """
    c = t.messages.c
    if check_holds and conn.execute(select(t.legal_holds.c.id).where(t.legal_holds.c.released_at.is_(None))
                                    .limit(1)).first() is not None:
        raise HoldsActive()
    if not any(conn.execute(select(c.uid).where(where).limit(1)).first() is not None for where in wheres):
        return [], None, cleanup.Released()  # nothing to remove: no MODSEQ spent, nothing announced
    hm = conn.execute(update(t.folders).where(identity.names_folder(ref))
                      .values(highestmodseq=t.folders.c.highestmodseq + 1)
                      .returning(t.folders.c.highestmodseq, t.folders.c.account_id)).first()
    if hm is None:
        raise NotFound("folder no longer exists")
    # The rows actually deleted (after the folder lock) are what the tombstones,
    # the usage and the blob check follow, not an earlier read.
    gone = [g for where in wheres
            for g in conn.execute(delete(t.messages).where(where).returning(c.uid, c.size, c.blob_id, c.flags)).all()]
    if gone:
        conn.execute(insert(t.expunged), [{"folder_id": ref.id, "uid": g.uid, "modseq": hm.highestmodseq}
                                          for g in gone])
    released = cleanup.collect_sync(conn, [g.blob_id for g in gone])
    uc = t.mailbox_usage.c
    conn.execute(update(t.mailbox_usage).where(uc.account_id == hm.account_id).values(
        bytes=uc.bytes - sum(g.size for g in gone), messages=uc.messages - len(gone)))
    event = FolderChanged(ref, hm.highestmodseq, "expunge")
    pgbus.notify_sync(conn, node, [event])  # delivered at commit only
    return gone, event, released
