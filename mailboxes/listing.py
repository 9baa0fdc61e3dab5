"""A folder's message list as SELECT reads it: the folder row and every message's state in one read transaction, the rest on demand.

Implementation notes
- This is the hot read of a SELECT: a 10,000-message folder is 10,000 rows. It is one read
  transaction (the folder row, then the messages), and the message rows are fetched with one
  plain SQL string through the driver, then turned into MessageMeta tuples in one tight loop.
  On SQLite all of it runs in the reader connection's thread, one hop for the whole read
  (Database.read_sync; through the async connection it was ten, and the conversion of
  10,000 rows ran on the event loop); on PostgreSQL asyncpg's fetch is native. Through SQLAlchemy's compiled select and Row objects the same read
  took about 60% more CPU (measured on SQLite, 10,000 rows: 16.5 ms against 10.5 ms).
- SELECT itself reads only the state columns (read_state: UID, MODSEQ, flags, keywords),
  transposed by zip into columns; the facts that never change for a UID (internal date,
  size, blob: read_facts) are read when a command needs them. On SQLite each column beyond
  the UID costs a lookup in the table (about 2.7 ms for 10,000 rows, the UID alone comes
  from the (folder_id, uid) index in 2.5 ms) plus ~1 ms; the date is text and parsing it was
  most of the conversion. Measured, 10,000 rows: 15.3 ms -> 7.9 ms for read and conversion.
  The full read (read_listing, MessageMeta) stays for the store's other readers.
- The SQL text has no input from a client: the only parameters are the folder id and a MODSEQ.
- The folder row is read first, in the same transaction, so its HIGHESTMODSEQ is never
  ahead of the rows read after it (a change committed in between shows up in the rows and
  again in the next changes_since, which is harmless; the other order could miss it).
- The folder row also carries ``recent_uid`` (RFC 3501 §2.3.2), so a SELECT learns whether
  there is anything to claim as \\Recent without another read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.util import await_only

from . import folderstate, identity
from . import schema as t
from .db import Database
from .model import Changes, Folder, FolderRef, FixedFacts, MessageMeta
from .offload import offload

_COLUMNS = "uid, modseq, flags, keywords, internal_date, size, blob_id"  # MessageMeta's field order
_ALL = {"sqlite": f"SELECT {_COLUMNS} FROM messages WHERE folder_id = ? ORDER BY uid",
        "postgresql": f"SELECT {_COLUMNS} FROM messages WHERE folder_id = $1 ORDER BY uid"}
_SINCE = {"sqlite": f"SELECT {_COLUMNS} FROM messages WHERE folder_id = ? AND modseq > ? ORDER BY uid",
          "postgresql": f"SELECT {_COLUMNS} FROM messages WHERE folder_id = $1 AND modseq > $2 ORDER BY uid"}
_NO_KEYWORDS: frozenset[str] = frozenset()
# SELECT's columns: what changes (flags, keywords, MODSEQ) with the UID. The facts that never change
# for a UID (internal date, size, blob) are read on demand by read_facts (about 40% of the read and
# most of the conversion: the date is text on SQLite).
_STATE_COLUMNS = "uid, modseq, flags, keywords"
_STATE = {"sqlite": f"SELECT {_STATE_COLUMNS} FROM messages WHERE folder_id = ? ORDER BY uid",
          "postgresql": f"SELECT {_STATE_COLUMNS} FROM messages WHERE folder_id = $1 ORDER BY uid"}
_FACTS_COLUMNS = "uid, internal_date, size, blob_id"
_FACTS = {"sqlite": f"SELECT {_FACTS_COLUMNS} FROM messages WHERE folder_id = ? AND uid BETWEEN ? AND ?",
          "postgresql": f"SELECT {_FACTS_COLUMNS} FROM messages WHERE folder_id = $1 AND uid BETWEEN $2 AND $3"}
FACTS_SPAN = 4  # a batch's UID range is read whole when it holds at most this many UIDs per one wanted
# PostgreSQL: a read runs on the event loop (run_sync); turning more rows than this into lists and tuples
# (~2-3 ms; 100,000 rows are ~40 ms of state columns, ~60 ms of MessageMeta) runs in a worker thread instead,
# as does decoding a saved state of ten times as many messages. Below it the hand-over costs more (~1 ms).
OFF_LOOP_ROWS = 5_000


@dataclass(frozen=True)
class Listing:
    """A folder as read at one moment: its row, the \\Recent mark, and its messages in UID order."""

    folder: Folder
    recent_uid: int  # folders.recent_uid: the highest UID some session was already told is \Recent
    metas: list[MessageMeta]
    uids: list[int]  # the metas' UIDs
    keywords: frozenset[str]  # every keyword the metas carry (SELECT's FLAGS response)


@dataclass(frozen=True)
class StateListing:
    """A folder as SELECT reads it: its row, the \\Recent mark and its messages' state as columns in UID order.

    ``flags`` holds each message's system flag bits (mailboxes.model.Flag, below 32) as one byte;
    ``keywords`` maps the UIDs that carry keywords to them (most carry none).
    """

    folder: Folder
    recent_uid: int
    uids: list[int]
    modseqs: list[int]
    flags: bytes
    keywords: dict[int, frozenset[str]]
    in_use: frozenset[str]  # every keyword the messages carry (SELECT's FLAGS response)
    behind: int = 0  # rows read beyond the folder's saved state (mailboxes.folderstate): all of them if none

    @property
    def columns(self) -> folderstate.Columns:
        return folderstate.Columns(self.uids, self.modseqs, self.flags, self.keywords, self.in_use)


@dataclass(frozen=True)
class FolderChanges:
    """A folder's row and \\Recent mark with what changed in it after a MODSEQ (RFC 7162)."""

    folder: Folder
    recent_uid: int
    changes: Changes


def metas_from_rows(rows: Iterable, uids: list[int] | None = None,
                    keywords: set[str] | None = None) -> list[MessageMeta]:
    """Rows in MessageMeta's column order to MessageMeta; stored times are UTC (SQLite gives them as naive text).

    ``uids`` and ``keywords``, when given, receive each row's UID and keywords in the same pass
    (on SQLite inside the reader's thread, not on the event loop).
    """
    out: list[MessageMeta] = []
    append, new, meta = out.append, tuple.__new__, MessageMeta
    fromiso, utc, empty = datetime.fromisoformat, timezone.utc, _NO_KEYWORDS
    add_uid = uids.append if uids is not None else None
    seen: dict[str, frozenset[str]] = {}  # one frozenset per distinct keywords text
    for uid, modseq, flags, kw, when, size, blob_id in rows:
        if type(when) is str:
            when = fromiso(when + "+00:00")
        elif when.tzinfo is None:
            when = when.replace(tzinfo=utc)
        if kw:
            kws = seen.get(kw)
            if kws is None:
                kws = seen[kw] = frozenset(kw.split())
        else:
            kws = empty
        # tuple.__new__ skips the NamedTuple's Python-level __new__: a third of the cost per row.
        append(new(meta, (uid, modseq, flags, kws, when, size, blob_id)))
        if add_uid is not None:
            add_uid(uid)
    if keywords is not None:
        for kws in seen.values():
            keywords.update(kws)
    return out


def state_columns(rows: list) -> tuple[list[int], list[int], bytes, dict[int, frozenset[str]], frozenset[str]]:
    """(uid, modseq, flags, keywords) rows to columns: transposed by zip (C speed), keywords parsed once per text."""
    if not rows:
        return [], [], b"", {}, _NO_KEYWORDS
    uids, modseqs, flags, texts = zip(*rows)
    try:
        bits = bytes(flags)
    except ValueError:  # a stored value beyond the five system flags: keep the flag bits only
        bits = bytes(f & 0x1F for f in flags)
    keywords: dict[int, frozenset[str]] = {}
    distinct = set(texts)
    distinct.discard("")
    distinct.discard(None)
    if distinct:
        parsed = {text: frozenset(text.split()) for text in distinct}
        keywords = {u: parsed[k] for u, k in zip(uids, texts) if k}
        in_use = frozenset().union(*parsed.values())
    else:
        in_use = _NO_KEYWORDS
    return list(uids), list(modseqs), bits, keywords, in_use


def _folder_row(conn: Connection, ref: FolderRef):
    row = conn.execute(select(t.folders).where(t.folders.c.id == ref.id)).first()
    identity.check(ref, row)  # NotFound when the folder was deleted or re-created meanwhile
    return row


def _fetcher(conn: Connection):
    """``fetch(sql by dialect, args)``: a plain statement through the driver, inside ``conn``'s transaction."""
    driver = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":  # in the sqlite3 connection's own thread (Database.read_sync)
        return lambda sql, args: driver.execute(sql["sqlite"], args).fetchall()
    return lambda sql, args: await_only(driver.fetch(sql["postgresql"], *args))


def _runner(conn: Connection) -> folderstate.Run:
    """``run(n, fn, *args)``: fn(*args) for n rows. On SQLite here (the reader's own thread already);
    on PostgreSQL, whose read runs on the event loop, in a worker thread once n passes OFF_LOOP_ROWS."""
    if conn.dialect.name == "sqlite":
        return lambda n, fn, *args: fn(*args)
    return lambda n, fn, *args: fn(*args) if n < OFF_LOOP_ROWS else await_only(offload(fn, *args))


def _rows(conn: Connection, folder_id: int, since: int | None) -> list:
    if since is None:
        return _fetcher(conn)(_ALL, (folder_id,))
    return _fetcher(conn)(_SINCE, (folder_id, since))  # asyncpg: inside the transaction the folder read began


def _listing(conn: Connection, ref: FolderRef, to_folder) -> Listing:
    row = _folder_row(conn, ref)
    uids: list[int] = []
    keywords: set[str] = set()
    rows = _rows(conn, ref.id, None)
    metas = _runner(conn)(len(rows), metas_from_rows, rows, uids, keywords)
    return Listing(to_folder(row), int(row.recent_uid), metas, uids, frozenset(keywords))


def _state(conn: Connection, ref: FolderRef, to_folder) -> StateListing:
    row = _folder_row(conn, ref)
    fetch, run = _fetcher(conn), _runner(conn)
    saved = folderstate.load(conn, ref.id, int(row.uidvalidity), int(row.highestmodseq), fetch, run)
    if saved is not None:
        c = saved.cols
        return StateListing(to_folder(row), int(row.recent_uid), c.uids, c.modseqs, c.flags, c.kws, c.keywords,
                            behind=saved.behind)
    rows = fetch(_STATE, (ref.id,))
    return StateListing(to_folder(row), int(row.recent_uid), *run(len(rows), state_columns, rows), behind=len(rows))


def _facts(conn: Connection, folder_id: int, uids: list[int]) -> dict:
    """(internal_date, size, blob_id) of ``uids`` (ascending): each batch's UID range read whole or UID by UID."""
    dialect = conn.dialect.name
    driver = conn.connection.driver_connection
    sql = _FACTS[dialect]
    run = _runner(conn)
    out = {}
    for lo, hi in _spans(uids):
        if dialect == "sqlite":
            rows = driver.execute(sql, (folder_id, lo, hi)).fetchall()
        else:
            rows = await_only(driver.fetch(sql, folder_id, lo, hi))
        out.update(run(len(rows), _facts_of, rows))
    return out


def _spans(uids: list[int]) -> list[tuple[int, int]]:
    """UID ranges covering ``uids`` (ascending), split where a gap would read many rows nobody asked for."""
    spans: list[tuple[int, int]] = []
    if not uids:
        return spans
    lo = prev = uids[0]
    count = 1
    for u in uids[1:]:
        if u - prev > FACTS_SPAN and u - lo + 1 > FACTS_SPAN * (count + 1):
            spans.append((lo, prev))
            lo, count = u, 0
        prev = u
        count += 1
    spans.append((lo, prev))
    return spans


def _facts_of(rows) -> dict:
    out = {}
    fromiso, utc, new, facts = datetime.fromisoformat, timezone.utc, tuple.__new__, FixedFacts
    for uid, when, size, blob_id in rows:
        if type(when) is str:
            when = fromiso(when + "+00:00")
        elif when.tzinfo is None:
            when = when.replace(tzinfo=utc)
        out[uid] = new(facts, (when, size, blob_id))
    return out


def _changes(conn: Connection, ref: FolderRef, modseq: int, to_folder) -> FolderChanges:
    row = _folder_row(conn, ref)
    hm = int(row.highestmodseq)
    if hm <= modseq:
        return FolderChanges(to_folder(row), int(row.recent_uid), Changes(hm))
    rows = _rows(conn, ref.id, modseq)
    changed = _runner(conn)(len(rows), metas_from_rows, rows)
    gone = conn.execute(select(t.expunged.c.uid).where(
        t.expunged.c.folder_id == ref.id, t.expunged.c.modseq > modseq).order_by(t.expunged.c.uid)).scalars().all()
    return FolderChanges(to_folder(row), int(row.recent_uid), Changes(hm, changed, list(gone)))


async def read_listing(db: Database, ref: FolderRef, to_folder) -> Listing:
    """Every message of the folder ``ref`` names (NotFound if it no longer does), in one read transaction."""
    return await db.read_sync(lambda conn: _listing(conn, ref, to_folder))


async def read_state(db: Database, ref: FolderRef, to_folder) -> StateListing:
    """The folder row and every message's UID, MODSEQ, flags and keywords, in one read transaction."""
    return await db.read_sync(lambda conn: _state(conn, ref, to_folder))


async def read_facts(db: Database, folder_id: int, uids: list[int]) -> dict:
    """UID → FixedFacts for those of ``uids`` (ascending) still in the folder."""
    return await db.read_sync(lambda conn: _facts(conn, folder_id, uids))


async def read_changes(db: Database, ref: FolderRef, modseq: int, to_folder) -> FolderChanges:
    """The folder row and the messages changed after ``modseq`` with the UIDs expunged after it."""
    return await db.read_sync(lambda conn: _changes(conn, ref, modseq, to_folder))
