"""Migrated empty stores built once per test process, so that each test's new database is a copy, not a schema build.

A new central database costs a schema build (every table, index and full-text table; about 0.2 s on
SQLite, more on PostgreSQL, whose CREATE DATABASE also copies template1 through the WAL). The first
request in a process builds one through the production path (open_mailboxes, which migrates an empty
database exactly as a server does) and later requests get:
- SQLite: a copy of that file (the database is closed, its WAL checkpointed away, before it is copied);
- PostgreSQL: ``CREATE DATABASE ... TEMPLATE`` of it, on the server the test session started.
What the migrations themselves do is tested by tests/store/test_migrations.py, which builds its own
databases both ways (revision by revision and in one step) and never uses these.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes

PG_TEMPLATE = "postroom_template"  # the database every test's PostgreSQL database is created from

_lock = threading.Lock()
_sqlite_template: Path | None = None
_pg_ready: set[int] = set()  # ports of the servers whose template is built


def _in_thread(coro_fn) -> None:
    """Run ``coro_fn()`` to completion on a loop of its own, even when called from inside a running loop."""
    failure: list[BaseException] = []

    def go() -> None:
        try:
            asyncio.run(coro_fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            failure.append(exc)

    t = threading.Thread(target=go, name="store-template")
    t.start()
    t.join()
    if failure:
        raise failure[0]


async def _build(url: str) -> None:
    mb = await open_mailboxes(StorageConfig(url=url))
    await mb.close()


def sqlite_url(path: Path) -> str:
    """Put a migrated, empty central database at `path` (which must not exist yet); returns its URL."""
    global _sqlite_template
    with _lock:
        if _sqlite_template is None:
            where = Path(tempfile.mkdtemp(prefix="postroom-template-"))
            made = where / "template.db"
            _in_thread(lambda: _build(f"sqlite:///{made}"))
            # the writers' lock file stays (mailboxes/db.py: never removed, or two processes could lock two files)
            leftovers = [p.name for p in where.iterdir() if p != made and p.name != made.name + ".writelock"]
            assert not leftovers, f"the template database left {leftovers} behind after closing"
            _sqlite_template = made
            atexit.register(shutil.rmtree, where, ignore_errors=True)
    if path.exists():
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


def pg_url(srv) -> str:
    """A new database on the session's PostgreSQL server `srv`, created from the migrated template; returns its URL."""
    with _lock:
        if srv.port not in _pg_ready:
            async def build() -> None:
                await _admin(srv, f'CREATE DATABASE "{PG_TEMPLATE}"')
                await _build(srv.url(PG_TEMPLATE))  # closes every connection to it: a template must have none
                await _admin(srv, f'ALTER DATABASE "{PG_TEMPLATE}" IS_TEMPLATE true ALLOW_CONNECTIONS false')

            _in_thread(build)
            _pg_ready.add(srv.port)
    name = "t_" + uuid.uuid4().hex[:12]
    # FILE_COPY: the template's files are copied as they are (with fsync off on the test server, no disk
    # waits); the default WAL_LOG writes every page of it through the WAL, 3-4 times slower for this size.
    _in_thread(lambda: _admin(srv, f'CREATE DATABASE "{name}" TEMPLATE "{PG_TEMPLATE}" STRATEGY FILE_COPY'))
    return srv.url(name)


async def _admin(srv, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=srv.port, user="postgres", database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


__all__ = ["PG_TEMPLATE", "sqlite_url", "pg_url"]
