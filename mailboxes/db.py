"""Database engines for one partition: durable SQLite (WAL, fsync on commit) or PostgreSQL.

SQLite allows one writer at a time. Write transactions go through a
dedicated single-connection engine and start with BEGIN IMMEDIATE, so a
transaction never has to upgrade a read lock (which fails at once with
SQLITE_BUSY instead of waiting); reads use a pool of WAL readers that never
block the writer. PostgreSQL uses one pool for both.

A hot write (the group-commit batch of deliveries) can be written as one
synchronous function and run with `write_sync`. On SQLite it then runs whole in
the thread that owns the writer connection, through a plain (pysqlite)
SQLAlchemy connection over that same sqlite3 connection: one thread hop per
transaction instead of several per statement (aiosqlite hands every cursor
call, fetch and commit to its thread and back). The durability settings are
the writer's own (WAL, synchronous FULL, BEGIN IMMEDIATE). On PostgreSQL it
runs under `AsyncConnection.run_sync` (asyncpg has no thread to hop to).

Several processes on one SQLite file (`postroom serve --workers N`, a CLI command beside the
server) take turns to write through an OS lock (flock on `<database>.writelock`), held from
before BEGIN IMMEDIATE to after COMMIT. Without it a writer that found the database locked
waited in SQLite's busy handler, which sleeps and polls (up to 100 ms a sleep): with two workers
the p99 of an SMTP delivery was 550-750 ms against 61-123 ms with one. A waiter now wakes the
moment the other commits, and the kernel releases the lock of a process that dies.

On SQLite the write_sync functions that wait for the writer together run in one transaction, each
in a SAVEPOINT of its own (WRITE_JOBS at most; taken once this process holds the lock, so what came
while it waited shares the turn). A process's group commits are of one kind each (posts taken in,
deliveries, settles, audit entries, index batches); under a flow they followed each other, each
paying BEGIN, COMMIT and its fsync, the lock's hand-over and the WAL frames of the hot pages every
kind touches again. A function that raises rolls back only its own SAVEPOINT and gets its error;
the others commit. A caller is answered only after the COMMIT, so "committed when this returns"
holds as before; should the COMMIT fail, every function of the transaction gets its error.
(bridges_bench, 12,000 workflow notifications at 1,000/s, 2 workers, runs alternating with one
transaction a function: the writer held 10.6-10.7 s -> 8.9-9.2 s, 1,440-1,750 transactions ->
1,100-1,240 (2 runs each, instrumented); p99 POST->INBOX 1.8-4.3 s -> 1.0-1.7 s (5 runs each), the
server's CPU ~4 % more an event. smtp_bench, 2 workers, 20 sessions: 818-853 -> 911-929 msg/s.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, Pool
from sqlalchemy.pool.base import _ConnectionRecord
from sqlalchemy.util import await_only

T = TypeVar("T")
# How a write_sync function runs blocking work (a blob file's write and fsync):
# blocking(job, *args) returns job(*args), run where it does not stall the event loop.
Blocking = Callable[..., Any]

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_READ_POOL = 8
WRITE_JOBS = 64  # write_sync functions one SQLite write transaction runs at most (module notes)
PG_POOL_SIZE = 10


def normalise_url(url: str) -> str:
    """Accept plain sqlite:/// and postgresql:// URLs and pick the async drivers."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


# FULL: the WAL is fsynced at every commit, so a 250/OK survives power loss. (The test suite sets OFF in
# its own process, as it runs its PostgreSQL without fsync: what tests kill is a process, never the machine.)
SQLITE_SYNCHRONOUS = "FULL"


def _sqlite_pragmas(engine: AsyncEngine, *, immediate: bool, foreign_keys: bool = True) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn, _record):  # noqa: ANN001
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions are off).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute(f"PRAGMA synchronous = {SQLITE_SYNCHRONOUS}")
        cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        cur.close()

    _begin_with(engine.sync_engine, immediate)


def _begin_with(engine: Engine, immediate: bool) -> None:
    @event.listens_for(engine, "begin")
    def _begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _run_together(bound: _ThreadBound, raw: sqlite3.Connection,
                  jobs: list[tuple[Callable, asyncio.Future]]) -> list[tuple[asyncio.Future, Any, BaseException | None]]:
    """One transaction for `jobs`, each in a SAVEPOINT (but a lone one); (future, result, error) per job."""
    done: list[tuple[asyncio.Future, Any, BaseException | None]] = []
    try:
        with bound.begin(raw) as conn:
            if len(jobs) == 1:
                fn, answer = jobs[0]
                done.append((answer, fn(conn, run_here), None))
            else:
                for fn, answer in jobs:
                    raw.execute("SAVEPOINT write_sync")
                    try:
                        value = fn(conn, run_here)
                    except Exception as exc:  # noqa: BLE001 - its caller gets it
                        if not raw.in_transaction:  # SQLite rolled the whole transaction back (disk full, ...)
                            raise
                        raw.execute("ROLLBACK TO write_sync")
                        raw.execute("RELEASE write_sync")
                        done.append((answer, None, exc))
                    else:
                        raw.execute("RELEASE write_sync")
                        done.append((answer, value, None))
    except BaseException as exc:  # noqa: BLE001 - the transaction is lost: each job its own error, or this one
        own = {id(answer): error for answer, _value, error in done if error is not None}
        return [(answer, None, own.get(id(answer), exc)) for _fn, answer in jobs]
    return done


def _answer(done: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    """Each write_sync caller its function's result or error (its transaction has ended)."""
    for answer, value, error in done:
        if answer.done():  # its caller was cancelled
            continue
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(value)


def run_here(job: Callable[..., T], *args) -> T:
    """Blocking work inside the SQLite writer thread: just do it (the loop is not waiting on this thread)."""
    return job(*args)


def run_off_loop(job: Callable[..., T], *args) -> T:
    """Blocking work inside run_sync (a greenlet on the event loop): await it in a worker thread."""
    return await_only(asyncio.to_thread(job, *args))


@dataclass
class Database:
    """A partition's engines: `write()` and `read()` yield connections inside a transaction."""

    url: str
    writer: AsyncEngine
    reader: AsyncEngine
    write_lock: WriteLock | None = None  # SQLite files: writers of every process take turns (module notes)
    # SQLite: the sync engines write_sync and read_sync run on (see _ThreadBound), made on first use.
    _bound: dict[bool, _ThreadBound] = field(default_factory=dict, repr=False)
    # What a module remembers per open database in this process (mailboxes.apitokens' live tokens).
    memo: dict[str, object] = field(default_factory=dict, repr=False, compare=False)
    # SQLite: write_sync functions waiting for the writer, (fn, future), and the task that runs them.
    _jobs: collections.deque = field(default_factory=collections.deque, repr=False, compare=False)
    _drainer: asyncio.Task | None = field(default=None, repr=False, compare=False)
    _taken: list = field(default_factory=list, repr=False, compare=False)  # those of the running transaction

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        if self.write_lock is None:
            async with self.writer.begin() as conn:
                yield conn
            return
        async with self.writer.connect() as conn:  # the process's one writer connection first, then the lock
            await self.write_lock.acquire()
            try:
                async with conn.begin():
                    yield conn
            finally:
                self.write_lock.release()

    async def write_sync(self, fn: Callable[[Connection, Blocking], T]) -> T:
        """Run ``fn(conn, blocking)`` as one write transaction; committed when this returns.

        ``fn`` is plain synchronous SQLAlchemy on ``conn`` and must not touch the event
        loop; it hands blocking work (file writes) to ``blocking``. On SQLite it runs in
        the writer connection's own thread, waited for once; the writer pool's single
        connection keeps it serialised with every other write, as `write()` is. Functions waiting
        at once share a transaction there, each in a SAVEPOINT (module notes): ``fn`` sees what
        those before it wrote, and its error rolls back only its own writes.
        """
        if self.dialect != "sqlite":
            async with self.write() as conn:
                return await conn.run_sync(fn, run_off_loop)
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self._jobs.append((fn, answer))
        if self._drainer is None or self._drainer.done() or self._drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain(), name="sqlite writer")
        return await answer

    async def _drain(self) -> None:
        """Run the waiting write_sync functions in the writer's thread, a transaction at a time."""
        try:
            while self._jobs:
                # Answered here, after the thread is done: a caller that goes on to close the database
                # (and its event loop) finds no hand-over of this task's still under way.
                _answer(await self._in_thread(self.writer, self._run_jobs))
                self._taken = []
        except BaseException as exc:
            # No writer connection (the engine closed at shutdown, ...) or this task cancelled: their
            # callers hear why. (Functions the thread took may still commit, as a cancelled write may.)
            left = [answer for _fn, answer in self._taken] + [answer for _fn, answer in self._jobs]
            self._jobs.clear()
            self._taken = []
            for answer in left:
                if answer.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    answer.cancel()
                else:
                    answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    def _run_jobs(self, raw: sqlite3.Connection) -> list[tuple[asyncio.Future, Any, BaseException | None]]:
        """In the writer connection's thread: take the lock (wait here), then what waits, as one transaction."""
        bound = self._bound.get(True)
        if bound is None:
            bound = self._bound.setdefault(True, _ThreadBound(True))
        lock = self.write_lock
        if lock is not None:
            lock.acquire_here()
        try:
            taken = []
            while self._jobs and len(taken) < WRITE_JOBS:
                job = self._jobs.popleft()
                if not job[1].done():  # not if its caller was cancelled meanwhile
                    taken.append(job)
            self._taken = taken
            return _run_together(bound, raw, taken) if taken else []
        finally:
            if lock is not None:
                lock.release()

    async def autocommit_sync(self, fn: Callable[[Connection], T]) -> T:
        """PostgreSQL only: ``fn(conn)`` outside a transaction, each statement committing itself.

        For a write that is one statement: it then costs one round trip, not three (no BEGIN,
        no COMMIT). The statement's answer comes after its commit, so it is durable on return.
        """
        if self.dialect != "postgresql":
            raise ValueError("autocommit_sync is for PostgreSQL (SQLite writes go through write_sync)")
        async with self.writer.connect() as conn:
            ac = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await ac.run_sync(fn)

    async def read_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` as one read transaction, on SQLite whole in a reader connection's thread.

        A read of several statements (a folder row, then its messages) is then one thread
        hop instead of several per statement; on PostgreSQL it runs under ``run_sync``
        (``fn`` may use ``sqlalchemy.util.await_only`` on the driver there).
        """
        if self.dialect != "sqlite":
            async with self.read() as conn:
                return await conn.run_sync(fn)
        return await self._in_thread(self.reader, self._run_read, fn)

    @staticmethod
    async def _in_thread(engine: AsyncEngine, run: Callable[..., T], *args: Any) -> T:
        """``run(raw, *args)`` in the thread of one of `engine`'s connections (``raw``: its sqlite3 connection)."""
        async with engine.connect() as aconn:
            raw = await aconn.get_raw_connection()
            driver = raw.driver_connection  # aiosqlite.Connection; its thread owns the sqlite3 connection
            # aiosqlite has no public "run this in your thread"; _execute is what its own methods use.
            return await driver._execute(run, driver._conn, *args)

    def _run_read(self, raw: sqlite3.Connection, fn: Callable[[Connection], T]) -> T:
        bound = self._bound.get(False)
        if bound is None:
            bound = self._bound.setdefault(False, _ThreadBound(False))
        with bound.begin(raw) as conn:
            return fn(conn)

    async def warm(self) -> None:
        """Make on opening what the first transactions would otherwise make for the first client.

        On SQLite: the sync engines of write_sync and read_sync (an engine's first connection
        runs its dialect's set-up queries), over the writer and one reader. An empty transaction
        each; on PostgreSQL nothing (its pool opens connections as they are needed).
        """
        if self.dialect == "sqlite":
            await self.write_sync(lambda _conn, _blocking: None)
            await self.read_sync(lambda _conn: None)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.reader.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def migrating(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction for schema migrations.

        On SQLite it runs on a connection of its own with foreign keys off (they cannot be
        switched inside a transaction), as SQLite's table-rebuild procedure asks: dropping
        the old copy of a rebuilt parent table would otherwise cascade into its children.
        The keys are checked before the commit.
        """
        if self.dialect != "sqlite":
            async with self.write() as conn:
                yield conn
            return
        engine = create_async_engine(self.url, poolclass=NullPool)
        _sqlite_pragmas(engine, immediate=True, foreign_keys=False)
        try:
            async with engine.begin() as conn:
                yield conn
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
        finally:
            await engine.dispose()

    async def dispose(self) -> None:
        drainer = self._drainer
        if drainer is not None and not drainer.done() and drainer.get_loop() is asyncio.get_running_loop():
            await asyncio.gather(drainer, return_exceptions=True)  # the writes already asked for, first
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()
        if self.write_lock is not None:
            self.write_lock.close()


class WriteLock:
    """An exclusive flock on a file beside the database: the writers of all processes take turns.

    Within a process the writer pool's single connection already serialises writes; this lock
    is taken by whoever holds that connection, so it is never contended inside a process. The
    file is opened per process (a descriptor inherited across fork would share the lock).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def acquire_here(self) -> None:
        """Wait for the lock in this thread (never the event loop's)."""
        fcntl.flock(self._descriptor(), fcntl.LOCK_EX)

    async def acquire(self) -> None:
        """Take the lock; when another process holds it, wait in a thread, not on the event loop."""
        fd = self._descriptor()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the usual case: free, no thread hop
            return
        except BlockingIOError:
            pass
        waiting = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread still takes the lock: give it back then, or every writer would wait forever.
            # (Should this process be writing again by then, its flock on the same descriptor is no
            # new lock and this release ends that one early: SQLite's own lock still keeps the
            # writes apart, only one turn is taken out of order.)
            waiting.add_done_callback(lambda f: None if f.cancelled() or f.exception() else self.release())
            raise

    def release(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def _sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL, or None (in memory)."""
    name = make_url(url).database
    return None if not name or name == ":memory:" or name.startswith("file:") else name


class _ThreadConnectionPool(Pool):
    """A pool that hands each thread the sqlite3 connection that thread owns (set by _ThreadBound.begin).

    It never opens or closes one: the connections belong to the async engines' pools.
    """

    def __init__(self, creator: Callable[[], Any], **kw: Any) -> None:
        super().__init__(creator, **kw)
        self.local = threading.local()

    def _do_get(self) -> _ConnectionRecord:
        rec = getattr(self.local, "rec", None)
        if rec is None or rec._is_hard_or_soft_invalidated():
            rec = self.local.rec = _ConnectionRecord(self)
        return rec

    def _do_return_conn(self, record: Any) -> None:
        pass

    def _create_connection(self) -> _ConnectionRecord:
        raise NotImplementedError

    def dispose(self) -> None:
        pass

    def recreate(self) -> _ThreadConnectionPool:
        return self.__class__(self._creator, reset_on_return=self._reset_on_return, dialect=self._dialect,
                              _dispatch=self.dispatch)

    def status(self) -> str:
        return "_ThreadConnectionPool"


class _ThreadBound:
    """One sync engine over all the sqlite3 connections of a pool, each used in the thread that owns it.

    aiosqlite gives each connection a thread of its own, and _run_read and _run_jobs run in it: the engine's
    pool hands each thread its own connection. One engine rather than one per connection, so a
    statement is compiled once for the whole pool (SQLAlchemy caches compiled statements per
    engine): a fresh process compiled the statements of its first SELECTs again in each new reader
    connection (the first SELECT of 10,000 messages: 3-4 ms of its ~14 ms).
    """

    def __init__(self, immediate: bool) -> None:
        self._here = threading.local()
        self.engine = create_engine("sqlite://", creator=lambda: self._here.raw, poolclass=_ThreadConnectionPool,
                                    pool_reset_on_return=None)
        _begin_with(self.engine, immediate=immediate)

    def begin(self, raw: sqlite3.Connection):  # noqa: ANN201
        if getattr(self._here, "raw", None) is not raw:  # this thread's first use (a thread owns one connection)
            self._here.raw = raw
            self.engine.pool.local.rec = None
        return self.engine.begin()


def open_database(url: str) -> Database:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        # No reset when the writer goes back to the pool: every use of it ends its transaction
        # itself (begin() commits or rolls back; write_sync's does too), and a reset is a
        # rollback call, one more trip to the driver's thread per transaction.
        writer = create_async_engine(url, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0,
                                     pool_reset_on_return=None)
        _sqlite_pragmas(writer, immediate=True)
        reader = create_async_engine(
            url, poolclass=AsyncAdaptedQueuePool, pool_size=SQLITE_READ_POOL, max_overflow=0
        )
        _sqlite_pragmas(reader, immediate=False)
        path = _sqlite_file(url)
        return Database(url, writer, reader, WriteLock(path + ".writelock") if path else None)
    engine = create_async_engine(url, pool_size=PG_POOL_SIZE, max_overflow=10)
    return Database(url, engine, engine)
