"""Search indexing out of the delivery's path: bodies wait in blob_index_pending, indexed when the store is idle.

A delivery used to write each new body's rows into both search indexes (search.py's words,
substring.py's trigrams) before its 250. Tokenising and inserting them was about a quarter of
the SQLite writer's time a message (smtp-source, one session: 31 % more messages a second
without them). The delivery transaction now writes one plain row of the body's texts
(`pending_params`), and this module moves such rows into the indexes later, as Dovecot's
fts indexes after delivery rather than during it.

Invariants:
- A pending row is committed with its body, so nothing waits on memory: a crash leaves the
  rows, and the next indexer (any process, any node) takes them.
- Every search indexes what is pending in its folder before it reads an index
  (`Indexer.catch_up`), so a search never misses a delivered message. It waits for rows another
  process is indexing at that moment (their row locks on PostgreSQL; the one writer on SQLite).
- A batch takes its rows and writes their index rows in one transaction: a row is indexed
  once, however many indexers run. A batch holds at most BATCH_CHARS of text (each row's texts
  are cut, when written, at what the indexes read of them), so its memory does not grow with
  what senders send.
- A body the database refuses to index (PostgreSQL's tsvector holds at most 1 MB: a text of a
  few hundred thousand different words) must not stop every search of its partition: when a
  batch is refused, its rows are indexed one per transaction, and a row refused alone is left
  out of the index that refuses it, with a warning. Its message stays stored and listed.
  Only a refusal of the data counts (integrity, data, program-limit errors): a locked or lost
  database fails the batch, and its rows stay pending. (No SAVEPOINTs: on the SQLite writer,
  batches in SAVEPOINTs coincided with 30 s stalls of other writers; see the session notes.)
- On PostgreSQL the background indexer skips rows another
  holds (FOR UPDATE SKIP LOCKED) and locks the bodies (FOR KEY SHARE) before their pending
  rows, in the order cleanup.collect takes them (the body FOR UPDATE, then the cascade), so
  the two never deadlock. A body removed meanwhile takes its pending row with it (ON DELETE
  CASCADE); the batch no longer sees it.
- The background indexer runs when this process has written no message for IDLE seconds, and
  in a burst (BURST bodies written within a second) for BURST_IDLE seconds: the gaps between a
  burst's waves of deliveries were longer than IDLE, and the indexer's batches in them took the
  CPU and the writer from the rest of the burst (bridges_bench, 2026-12-06: a burst of 1,000
  workflow notifications reached the mailboxes with p99 0.90 s, 0.74 s when the indexer waited
  for 0.3 s of quiet). A steady flow below BURST a second is indexed as it comes, so a search
  seldom has much to catch up. Idle, it takes IDLE_BATCH bodies a transaction (200 bodies of 4 KB
  held the store's writer ~110 ms, a delivery waiting behind them; 50, ~30 ms; a search's catch-up
  takes BATCH, on SQLite no more than CATCH_UP_CHARS of text). Under a load that never pauses it
  waits up to MAX_LAG: once a body of ours has waited that long it indexes SMALL_BATCH at a time
  between the deliveries, so the wait stays bounded and each delivery is held back by one such
  batch at most. (It began once 2,000 bodies waited, ~2-4 s into a flow of 1,000 notifications a
  second: from then on indexing took the CPU and the writer from the deliveries, which fell
  behind, p99 1.2-2.1 s after 20 s; waiting a minute, 0.56-0.89 s, bridges_bench 2026-12-06. The
  flow's ~18,000 bodies were indexed ~6 s after it.) A search meanwhile indexes only what its
  own folder waits for (`catch_up(folder)`: 400 bodies of one recipient, 189 ms), not the
  backlog of the whole flow. SMALL_BATCH was 32: FTS5 writes its segments at
  commit, and a batch of 32 paid that (and a transaction) per 32 bodies; with 256 the indexer held
  the shared writer ~40 % less in a flow of 1,000 notifications a second (bridges_bench, 2 A/B
  runs), a delivery waiting behind one batch some tens of ms more (~0.1-0.5 ms a body). Such a
  batch also stops at SMALL_BATCH_CHARS of text, so larger bodies make fewer of them a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass

from sqlalchemy import bindparam, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from . import search, substring
from .db import Database

log = logging.getLogger(__name__)

BATCH = 200  # rows a batch indexes when a search catches up (the search waits for them all)
CATCH_UP_CHARS = 400_000  # and text, on SQLite: ~80 letters of 4 KB hold the one writer ~45 ms, not 200 ~110 ms
IDLE_BATCH = 50  # rows a background batch indexes when the store is idle: the writer is held ~30 ms, not ~110
SMALL_BATCH = 256  # rows a batch indexes between deliveries once MAX_LAG is reached (a few tens of ms)
SMALL_BATCH_CHARS = 256_000  # and text: 256 notifications (~1,000 characters each), ~50 letters of 4 KB
IDLE = 0.05  # seconds without a delivery (in this process) before the background indexer runs
BURST = 50  # bodies written within BURST_WINDOW that make a burst: the indexer then waits for BURST_IDLE
BURST_WINDOW = 1.0  # seconds
BURST_IDLE = 0.3  # seconds without a delivery before the background indexer runs, in a burst
MAX_LAG = 60.0  # seconds a body of ours may wait for the indexes; then batches run between deliveries
BATCH_CHARS = 4_000_000  # text a batch takes at most (it always takes one row): a few tens of MB in memory

# What the indexes read of each text (search._terms, substring.prepare): a pending row keeps no more.
WORD_CHARS = search.MAX_INDEXED_CHARS  # subject, addresses and body in the word index
HEAD_CHARS = substring.HEAD_CHARS * 2  # the header is in the substring index only, folded from twice its limit
assert substring.BODY_CHARS * 2 <= WORD_CHARS  # the body's cut serves both indexes
WORDS, SUBSTRINGS = "word", "substring"
BOTH = (WORDS, SUBSTRINGS)

TABLE = "blob_index_pending"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # neither SQLite's UTF-8 nor PostgreSQL's text holds these


def _storable(s: str) -> str:
    # Raw 8-bit bytes no charset decoded survive as lone surrogates; both indexes treat U+FFFD
    # as they treat them (a separator; a character that no needle contains), so nothing is lost.
    if s.isascii() and "\x00" not in s:  # the usual case, two scans in C
        return s
    return _UNSTORABLE.sub("\ufffd", s) if _UNSTORABLE.search(s) else s


def pending_params(blob_id: int | None, subject: str, addrs: str, head: str, body: str) -> dict:
    """One pending row's parameters: the texts as far as the indexes read them (raw; prepared when indexed).

    Cut at what search.py and substring.py take of each (the same characters, so the same
    index rows), made storable (one character for one, so the cut is the same before or after).
    """
    ps, pa = _storable(subject[:WORD_CHARS]), _storable(addrs[:WORD_CHARS])
    ph, pb = _storable(head[:HEAD_CHARS]), _storable(body[:WORD_CHARS])
    return {"blob_id": blob_id, "pn": len(ps) + len(pa) + len(ph) + len(pb), "ps": ps, "pa": pa, "ph": ph, "pb": pb}


_COLUMNS = "blob_id, chars, subject, addrs, head, body"
INSERT_SQL = f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (:blob_id, :pn, :ps, :pa, :ph, :pb)"
_INSERT = text(INSERT_SQL)

# A pending row for a new body `b` as a CTE (PostgreSQL), with pending_params' names.
PENDING_CTE_PG = f" p AS (INSERT INTO {TABLE} ({_COLUMNS}) SELECT b.id, :pn, :ps, :pa, :ph, :pb FROM b)"


def add_pending(conn: Connection, rows: list[dict]) -> None:
    """Inside the transaction that stores the bodies: their rows of pending_params."""
    if rows:
        conn.execute(_INSERT, rows)


# The first rows from :lo to :hi in blob_id order, at most :n of them and, beyond the first, at most
# :budget characters of text. `chars` comes first in the row, so this reads no text (SQLite: no overflow page).
# `folder`: only the bodies of messages in folder :fid (a search's catch-up; an index probe a pending row).
def _first(folder: bool) -> str:
    where = "blob_id BETWEEN :lo AND :hi" + (_IN_FOLDER if folder else "")
    return (f"SELECT blob_id FROM (SELECT blob_id, sum(chars) OVER (ORDER BY blob_id ROWS UNBOUNDED PRECEDING)"
            f" - chars AS before FROM (SELECT blob_id, chars FROM {TABLE} WHERE {where}"
            f" ORDER BY blob_id LIMIT :n) AS firstn) AS running WHERE before < :budget")


# The probe by messages.blob_id: "+" keeps folder_id off the indexes (without statistics SQLite took one by
# folder_id, ix_messages_modseq, and read the folder's every message for each pending row: 0.65 s a batch
# of a 400-message INBOX behind 19,000 pending bodies, not 12 ms).
_IN_FOLDER = f" AND EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = {TABLE}.blob_id AND +m.folder_id = :fid)"
_RETURNING = " RETURNING blob_id, chars, subject, addrs, head, body"


def _take_sql(dialect: str, wait: bool, folder: bool) -> list:
    if dialect == "sqlite":  # the one writer: nothing else takes rows meanwhile
        return [text(f"DELETE FROM {TABLE} WHERE blob_id IN ({_first(folder)})" + _RETURNING)]
    skip = "" if wait else " SKIP LOCKED"
    return [text(f"SELECT id FROM blobs WHERE id IN ({_first(folder)}) ORDER BY id FOR KEY SHARE{skip}"),
            text(f"DELETE FROM {TABLE} WHERE blob_id IN :ids" + _RETURNING)
            .bindparams(bindparam("ids", expanding=True))]


_LAST_ID = 2**63 - 1


def index_pending_sync(conn: Connection, limit: int, *, wait: bool, only: int | None = None,
                       indexes: tuple[str, ...] = BOTH, budget: int | None = None,
                       folder: int | None = None) -> tuple[int, bool]:
    """Index up to ``limit`` pending bodies (at most ``budget`` characters of text; BATCH_CHARS unless
    told) in this transaction.

    Returns how many, and whether the batch was full (``limit`` rows or ``budget``): if it
    was not, no row was left that this call could take.

    ``wait``: also the rows another transaction is indexing right now (PostgreSQL waits for
    it, and then finds them gone): a search's catch-up. Without it they are skipped.
    ``only``: just this body's row; ``indexes``: write into these of the two (the row is taken
    all the same: a body refused by one index is left out of it). ``folder``: only bodies of
    messages in this folder (a search's catch-up).
    """
    stmts = _take_sql(conn.dialect.name, wait, folder is not None)
    lo, hi = (0, _LAST_ID) if only is None else (only, only)
    budget = BATCH_CHARS if budget is None else budget
    params = {"n": limit, "lo": lo, "hi": hi, "budget": budget, "fid": folder}
    if len(stmts) == 1:
        rows = conn.execute(stmts[0], params).all()
    else:
        ids = list(conn.execute(stmts[0], params).scalars())
        rows = conn.execute(stmts[1], {"ids": ids}).all() if ids else []
    _index_rows(conn, rows, indexes)
    return len(rows), len(rows) == limit or sum(r.chars for r in rows) >= budget


# SQLite: the rows are read and their index rows made outside the write (a read transaction, no
# lock), then taken and written in one write transaction. The write lock every worker process
# writes under (db.WriteLock) was held ~30 ms by a batch of a hundred bodies tokenised inside it.
_PEEK = {folder: text(f"SELECT blob_id, chars, subject, addrs, head, body FROM {TABLE} WHERE blob_id IN"
                     f" ({_first(folder)}) ORDER BY blob_id") for folder in (False, True)}
_TAKE = text(f"DELETE FROM {TABLE} WHERE blob_id IN :ids RETURNING blob_id").bindparams(
    bindparam("ids", expanding=True))


@dataclass
class Prepared:
    """A batch's index rows, made in a read transaction (`prepare_sync`), written by `write_prepared_sync`."""

    ids: list[int]
    words: list[dict]
    substrings: list[dict]
    full: bool  # limit rows or BATCH_CHARS: more may be left


def prepare_sync(conn: Connection, limit: int, budget: int | None = None, folder: int | None = None) -> Prepared:
    budget = BATCH_CHARS if budget is None else budget
    rows = conn.execute(_PEEK[folder is not None],
                        {"n": limit, "lo": 0, "hi": _LAST_ID, "budget": budget, "fid": folder}).all()
    return Prepared([r.blob_id for r in rows], search.row_params([(r.blob_id, r.subject, r.addrs, r.body) for r in rows]),
                    substring.row_params([(r.blob_id, r.head, r.body) for r in rows]),
                    len(rows) == limit or sum(r.chars for r in rows) >= budget)


def write_prepared_sync(conn: Connection, batch: Prepared) -> int:
    """Take the batch's pending rows that are still there and write their index rows; how many.

    A row another indexer took since (another worker process), or whose body was removed (the
    cascade), is not there any more: its index rows are not written, so each body is indexed once.
    """
    if not batch.ids:
        return 0
    taken = set(conn.execute(_TAKE, {"ids": batch.ids}).scalars())
    keep = (lambda params: params) if len(taken) == len(batch.ids) else \
        (lambda params: [p for p in params if p["id"] in taken])
    search.insert_params(conn, keep(batch.words))
    substring.insert_params(conn, keep(batch.substrings))
    return len(taken)


def _index_rows(conn: Connection, rows: list, indexes: tuple[str, ...] = BOTH) -> None:
    if rows and WORDS in indexes:
        search.index_blobs(conn, [(r.blob_id, r.subject, r.addrs, r.body) for r in rows])
    if rows and SUBSTRINGS in indexes:
        substring.index_blobs(conn, [(r.blob_id, r.head, r.body) for r in rows])


def drain_sync(conn: Connection) -> None:
    """Index everything pending in this transaction (a migration about to change or drop the table)."""
    counted = "chars" in {c["name"] for c in inspect(conn).get_columns(TABLE)}  # else: as mai0012 made it
    while conn.execute(text(f"SELECT 1 FROM {TABLE} LIMIT 1")).first() is not None:
        if not counted:
            _index_rows(conn, conn.execute(text(f"DELETE FROM {TABLE} WHERE blob_id IN (SELECT blob_id FROM {TABLE}"
                                                f" ORDER BY blob_id LIMIT 50) RETURNING blob_id, subject, addrs,"
                                                " head, body")).all())
        else:
            index_pending_sync(conn, BATCH, wait=True)


def refused(exc: DBAPIError) -> bool:
    """Whether the database refused the data itself (a retry cannot help), not: it is locked, gone or full.

    Integrity and data errors; on PostgreSQL also SQLSTATE classes 22 (data exception) and 54
    (program limit exceeded: the tsvector's 1 MB, which asyncpg's adapter reports as a plain error).
    """
    if isinstance(exc, (IntegrityError, DataError)):
        return True
    state = getattr(exc.orig, "sqlstate", None) or ""
    return state[:2] in ("22", "23", "54")


def drop_pending(conn: Connection, blob_ids: list[int]) -> None:
    """Forget these bodies' pending rows (their index rows are being written anew: reindex.py)."""
    if blob_ids:
        conn.execute(text(f"DELETE FROM {TABLE} WHERE blob_id IN :ids").bindparams(bindparam("ids", expanding=True)),
                     {"ids": blob_ids})


_FIRST_IDS = {folder: text(f"SELECT blob_id FROM {TABLE} WHERE blob_id >= 0{_IN_FOLDER if folder else ''}"
                          " ORDER BY blob_id LIMIT :n") for folder in (False, True)}
_ANY = {folder: text(f"SELECT 1 FROM {TABLE} WHERE blob_id >= 0{_IN_FOLDER if folder else ''} LIMIT 1")
        for folder in (False, True)}


def _any_pending(conn: Connection, folder: int | None = None) -> bool:
    return conn.execute(_ANY[folder is not None], {"fid": folder}).first() is not None


class Indexer:
    """One partition database's indexing: the background task and the searches' catch-up."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self._written = 0  # bodies (at most) written since the last batch: the backlog, as far as we know
        self._last_write = 0.0
        self._window = (0.0, 0)  # (start, bodies written since): the write rate, for BURST
        self._burst = False  # a burst of writes is going on: index after BURST_IDLE of quiet, not IDLE
        self._task: asyncio.Task | None = None
        self._oldest: float | None = None  # when the oldest body of ours not known to be indexed was written
        self._wake = asyncio.Event()  # close(): no more waiting for a pause
        self._catching_up = asyncio.Lock()
        self._closing = False
        self.indexed = 0  # bodies this process has indexed (benchmarks, tests)

    def written(self, n: int) -> None:
        """Messages were written (each maybe a new body): index them once the store is idle."""
        self._written += n
        self._last_write = now = asyncio.get_running_loop().time()
        if self._oldest is None:
            self._oldest = now
        start, count = self._window
        self._window = (start, count + n) if now - start < BURST_WINDOW else (now, n)
        if self._window[1] >= BURST:
            self._burst = True
        self.start()

    def start(self, *, leftovers: bool = False) -> None:
        """Run the background indexer if it is not running; ``leftovers``: rows an earlier run left (at open)."""
        if not self._closing and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(leftovers), name=f"indexer {self.name}")

    async def _run(self, leftovers: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            if leftovers and await self.db.read_sync(_any_pending):
                self._written = max(self._written, 1)
                self._oldest = self._oldest or loop.time()
            while self._written > 0 and not self._closing:  # 0: nothing of ours waits (a catch-up took it, ...)
                now = loop.time()
                quiet = now - self._last_write
                idle = BURST_IDLE if self._burst else IDLE
                due = (self._oldest if self._oldest is not None else now) + MAX_LAG  # then, pause or not
                if quiet < idle and now < due:
                    self._wake.clear()  # (set by close())
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(idle - quiet, due - now)):
                            await self._wake.wait()
                    continue
                if self._closing:
                    return
                if quiet >= idle:
                    self._burst = False  # the burst is over
                size, budget = (IDLE_BATCH, None) if quiet >= idle else (SMALL_BATCH, SMALL_BATCH_CHARS)
                before, started = self._written, now
                n, full = await self._batch(size, wait=False, budget=budget)
                self.indexed += n
                # Not full: none is left that we may take (on PostgreSQL, another node holds the rest) of
                # what was written before the batch; bodies written during it (written() counted them)
                # may have committed after it looked, so they are waited for again, not forgotten.
                self._written = (max(1, before - n) if full else 0) + (self._written - before)
                if not self._written:
                    self._oldest = None
                elif not full:  # what waits now was written after this batch began
                    self._oldest = max(self._oldest or started, started)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the rows stay pending; a search or the next write retries
            log.exception("indexing of partition %s failed; the bodies stay pending", self.name)

    async def _batch(self, size: int, *, wait: bool, budget: int | None = None,
                     folder: int | None = None) -> tuple[int, bool]:
        """One batch of up to ``size`` rows (index_pending_sync); if the database refuses it, its rows one by one."""
        try:
            if self.db.dialect == "sqlite":
                batch = await self.db.read_sync(lambda conn: prepare_sync(conn, size, budget, folder))
                n = await self.db.write_sync(lambda conn, _blocking: write_prepared_sync(conn, batch))
                # Rows another indexer took meanwhile: more may wait behind them (a catch-up must look again).
                return n, batch.full or n < len(batch.ids)
            return await self.db.write_sync(lambda conn, _blocking: index_pending_sync(conn, size, wait=wait,
                                                                                       budget=budget, folder=folder))
        except DBAPIError as exc:
            if not refused(exc):
                raise
        ids = await self.db.read_sync(lambda conn: list(conn.execute(_FIRST_IDS[folder is not None],
                                                                     {"n": size, "fid": folder}).scalars()))
        done = 0
        for blob_id in ids:
            for indexes in (BOTH, (SUBSTRINGS,), (WORDS,), ()):
                try:
                    n, _ = await self.db.write_sync(lambda conn, _blocking, b=blob_id, i=indexes: index_pending_sync(
                        conn, 1, wait=wait, only=b, indexes=i))
                except DBAPIError as exc:
                    if not refused(exc):
                        raise
                    error = str(exc.orig).splitlines()[0][:200] if str(exc.orig) else type(exc.orig).__name__
                    continue
                if n and indexes != BOTH:
                    left = " and the ".join(f"{x} index" for x in BOTH if x not in indexes)
                    log.warning("body %d of partition %s left out of the %s: %s", blob_id, self.name, left, error)
                done += n
                break
        return done, len(ids) == size or done < len(ids)

    async def catch_up(self, folder: int | None = None) -> int:
        """Index what is pending (a search is about to read the indexes); returns how many.

        ``folder``: only the bodies of that folder's messages (a search reads no others), so a
        search costs what its folder waits for, not the backlog of a whole flow (MAX_LAG).
        """
        if not await self.db.read_sync(lambda conn: _any_pending(conn, folder)):
            return 0
        done = 0
        async with self._catching_up:  # concurrent searches share one catch-up
            while True:
                # On SQLite every writer waits behind each batch: a bounded one lets deliveries in between.
                n, full = await self._batch(BATCH, wait=True, folder=folder,
                                            budget=CATCH_UP_CHARS if self.db.dialect == "sqlite" else None)
                done += n
                self.indexed += n
                # SQLite's one writer saw every row: a batch not full means none is left. On PostgreSQL
                # rows another node was indexing are waited for and found gone: go on until none came.
                # On SQLite a batch is full also when another indexer took some of its rows: look again.
                if not full and (n == 0 or self.db.dialect == "sqlite"):
                    if folder is None:
                        self._written, self._oldest = 0, None  # the background indexer has nothing of ours left
                    return done

    async def settled(self) -> None:
        """Until the background indexer has stopped (nothing of this process's is pending): tests, benchmarks."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Stop the background indexer after its batch (not within one: the database closes next)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
