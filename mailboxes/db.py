"""Database engines for one partition: durable SQLite (WAL, fsync on commit) or PostgreSQL.

SQLite allows one writer at a time. Write transactions go through a
dedicated single-connection engine and start with BEGIN IMMEDIATE, so a
transaction never has to upgrade a read lock (which fails at once with
SQLITE_BUSY instead of waiting); reads use a pool of WAL readers that never
block the writer. PostgreSQL uses one pool for both.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_READ_POOL = 8
PG_POOL_SIZE = 10


def normalise_url(url: str) -> str:
    """Accept plain sqlite:/// and postgresql:// URLs and pick the async drivers."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def _sqlite_pragmas(engine: AsyncEngine, *, immediate: bool, foreign_keys: bool = True) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn, _record):  # noqa: ANN001
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions are off).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        # FULL: the WAL is fsynced at every commit, so a 250/OK survives power loss.
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@dataclass
class Database:
    """A partition's engines: `write()` and `read()` yield connections inside a transaction."""

    url: str
    writer: AsyncEngine
    reader: AsyncEngine

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.writer.begin() as conn:
            yield conn

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
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def open_database(url: str) -> Database:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        writer = create_async_engine(url, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0)
        _sqlite_pragmas(writer, immediate=True)
        reader = create_async_engine(
            url, poolclass=AsyncAdaptedQueuePool, pool_size=SQLITE_READ_POOL, max_overflow=0
        )
        _sqlite_pragmas(reader, immediate=False)
        return Database(url, writer, reader)
    engine = create_async_engine(url, pool_size=PG_POOL_SIZE, max_overflow=10)
    return Database(url, engine, engine)
