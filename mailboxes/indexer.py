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
- Every search indexes what is pending before it reads an index (`Indexer.catch_up`), so a
  search never misses a delivered message. It waits for rows another process is indexing
  at that moment (their row locks on PostgreSQL; the one writer on SQLite).
- A batch takes its rows and writes their index rows in one transaction: a row is indexed
  once, however many indexers run. On PostgreSQL the background indexer skips rows another
  holds (FOR UPDATE SKIP LOCKED) and locks the bodies (FOR KEY SHARE) before their pending
  rows, in the order cleanup.collect takes them (the body FOR UPDATE, then the cascade), so
  the two never deadlock. A body removed meanwhile takes its pending row with it (ON DELETE
  CASCADE); the batch no longer sees it.
- The background indexer runs when this process has written no message for IDLE seconds;
  under a load that never pauses, once BACKLOG bodies wait it indexes SMALL_BATCH at a time
  between the deliveries, so the wait stays bounded and each delivery is held back by one
  small batch at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from . import search, substring
from .db import Database

log = logging.getLogger(__name__)

BATCH = 200  # rows a batch indexes when the store is idle, and when a search catches up
SMALL_BATCH = 32  # rows a batch indexes between deliveries once BACKLOG is reached
IDLE = 0.05  # seconds without a delivery (in this process) before the background indexer runs
BACKLOG = 2_000  # bodies written since the last batch beyond which it runs whether idle or not

TABLE = "blob_index_pending"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # neither SQLite's UTF-8 nor PostgreSQL's text holds these


def _storable(s: str) -> str:
    # Raw 8-bit bytes no charset decoded survive as lone surrogates; both indexes treat U+FFFD
    # as they treat them (a separator; a character that no needle contains), so nothing is lost.
    if s.isascii() and "\x00" not in s:  # the usual case, two scans in C
        return s
    return _UNSTORABLE.sub("\ufffd", s) if _UNSTORABLE.search(s) else s


def pending_params(blob_id: int | None, subject: str, addrs: str, head: str, body: str) -> dict:
    """One pending row's parameters: the texts as the indexes take them (raw; prepared when indexed)."""
    return {"blob_id": blob_id, "ps": _storable(subject), "pa": _storable(addrs), "ph": _storable(head),
            "pb": _storable(body)}


INSERT_SQL = f"INSERT INTO {TABLE} (blob_id, subject, addrs, head, body) VALUES (:blob_id, :ps, :pa, :ph, :pb)"
_INSERT = text(INSERT_SQL)

# A pending row for a new body `b` as a CTE (PostgreSQL), with pending_params' names.
PENDING_CTE_PG = f" p AS (INSERT INTO {TABLE} (blob_id, subject, addrs, head, body) SELECT b.id, :ps, :pa, :ph, :pb FROM b)"


def add_pending(conn: Connection, rows: list[dict]) -> None:
    """Inside the transaction that stores the bodies: their rows of pending_params."""
    if rows:
        conn.execute(_INSERT, rows)


def _take_sql(dialect: str, wait: bool) -> list:
    if dialect == "sqlite":  # the one writer: nothing else takes rows meanwhile
        return [text(f"DELETE FROM {TABLE} WHERE blob_id IN"
                     f" (SELECT blob_id FROM {TABLE} ORDER BY blob_id LIMIT :n)"
                     " RETURNING blob_id, subject, addrs, head, body")]
    skip = "" if wait else " SKIP LOCKED"
    return [text(f"SELECT id FROM blobs WHERE id IN (SELECT blob_id FROM {TABLE} ORDER BY blob_id LIMIT :n)"
                 f" ORDER BY id FOR KEY SHARE{skip}"),
            text(f"DELETE FROM {TABLE} WHERE blob_id IN :ids RETURNING blob_id, subject, addrs, head, body")
            .bindparams(bindparam("ids", expanding=True))]


def index_pending_sync(conn: Connection, limit: int, *, wait: bool) -> int:
    """Index up to ``limit`` pending bodies in this transaction; returns how many.

    ``wait``: also the rows another transaction is indexing right now (PostgreSQL waits for
    it, and then finds them gone): a search's catch-up. Without it they are skipped.
    """
    stmts = _take_sql(conn.dialect.name, wait)
    if len(stmts) == 1:
        rows = conn.execute(stmts[0], {"n": limit}).all()
    else:
        ids = list(conn.execute(stmts[0], {"n": limit}).scalars())
        rows = conn.execute(stmts[1], {"ids": ids}).all() if ids else []
    if rows:
        search.index_blobs(conn, [(r.blob_id, r.subject, r.addrs, r.body) for r in rows])
        substring.index_blobs(conn, [(r.blob_id, r.head, r.body) for r in rows])
    return len(rows)


def drop_pending(conn: Connection, blob_ids: list[int]) -> None:
    """Forget these bodies' pending rows (their index rows are being written anew: reindex.py)."""
    if blob_ids:
        conn.execute(text(f"DELETE FROM {TABLE} WHERE blob_id IN :ids").bindparams(bindparam("ids", expanding=True)),
                     {"ids": blob_ids})


def _any_pending(conn: Connection) -> bool:
    return conn.execute(text(f"SELECT 1 FROM {TABLE} LIMIT 1")).first() is not None


class Indexer:
    """One partition database's indexing: the background task and the searches' catch-up."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self._written = 0  # bodies (at most) written since the last batch: the backlog, as far as we know
        self._last_write = 0.0
        self._task: asyncio.Task | None = None
        self._backlog = asyncio.Event()  # set when BACKLOG is reached: no more waiting for a pause
        self._catching_up = asyncio.Lock()
        self._closing = False
        self.indexed = 0  # bodies this process has indexed (benchmarks, tests)

    def written(self, n: int) -> None:
        """Messages were written (each maybe a new body): index them once the store is idle."""
        self._written += n
        self._last_write = asyncio.get_running_loop().time()
        if self._written >= BACKLOG:
            self._backlog.set()
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
            while self._written > 0 and not self._closing:  # 0: nothing of ours waits (a catch-up took it, ...)
                quiet = loop.time() - self._last_write
                if quiet < IDLE and self._written < BACKLOG:
                    self._backlog.clear()  # (close() sets it too)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._backlog.wait(), IDLE - quiet)
                    continue
                if self._closing:
                    return
                size = BATCH if quiet >= IDLE else SMALL_BATCH
                n = await self.db.write_sync(lambda conn, _blocking: index_pending_sync(conn, size, wait=False))
                self.indexed += n
                # Fewer than asked: none is left that we may take (on PostgreSQL, another node holds the rest).
                self._written = max(1, self._written - n) if n == size else 0
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the rows stay pending; a search or the next write retries
            log.exception("indexing of partition %s failed; the bodies stay pending", self.name)

    async def catch_up(self) -> int:
        """Index everything pending (a search is about to read the indexes); returns how many."""
        if not await self.db.read_sync(_any_pending):
            return 0
        done = 0
        async with self._catching_up:  # concurrent searches share one catch-up
            while True:
                n = await self.db.write_sync(lambda conn, _blocking: index_pending_sync(conn, BATCH, wait=True))
                done += n
                self.indexed += n
                # SQLite's one writer saw every row: fewer than asked means none is left. On PostgreSQL
                # rows another node was indexing are waited for and found gone: go on until none came.
                if n == 0 or (n < BATCH and self.db.dialect == "sqlite"):
                    self._written = 0  # the background indexer has nothing of ours left
                    return done

    async def settled(self) -> None:
        """Until the background indexer has stopped (nothing of this process's is pending): tests, benchmarks."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Stop the background indexer after its batch (not within one: the database closes next)."""
        self._closing = True
        self._backlog.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
