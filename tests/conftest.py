"""Shared fixtures: storage back-ends (SQLite and a real PostgreSQL), a fast Argon2 hasher."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from argon2 import PasswordHasher

from mailboxes import db as _db
from tests.support import pgserver, templates

# The suite's own process commits without fsync (SQLite synchronous=OFF), as its PostgreSQL runs without
# fsync: a killed process loses nothing either way (the writes are in the OS's cache when a commit
# returns), only a power cut would. `postroom serve` subprocesses and the benchmarks keep FULL.
_db.SQLITE_SYNCHRONOUS = "OFF"

# Real Argon2, cheap parameters: tests create many accounts.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(scope="session")
def pg():
    if os.environ.get("POSTROOM_NO_PG"):
        pytest.skip("POSTROOM_NO_PG is set")
    srv = pgserver.start()
    if srv is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries not found; `make test` installs them")
        pytest.skip("PostgreSQL is not installed (run `make test`, which installs it)")
    yield srv
    srv.stop()


def _create_pg_database(srv, name: str) -> None:
    """An empty database (what a first start finds); storage_url's come migrated from a template."""
    import asyncpg

    async def go():
        conn = await asyncpg.connect(host="127.0.0.1", port=srv.port, user="postgres", database="postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def storage_url(request, tmp_path):
    """The URL of a new central database on each back-end, migrated and empty (a copy of tests.support.templates')."""
    if request.param == "sqlite":
        return templates.sqlite_url(tmp_path / "postroom.db")
    return templates.pg_url(request.getfixturevalue("pg"))


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def empty_storage_url(request, tmp_path):
    """The URL of an empty database (no tables) on each back-end: for the tests of the migrations themselves."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/postroom.db"
    srv = request.getfixturevalue("pg")
    name = "e_" + uuid.uuid4().hex[:12]
    _create_pg_database(srv, name)
    return srv.url(name)


# --- What a hung test was waiting for -------------------------------------------------------------
# pytest-timeout prints every thread's stack, but a test stuck on the event loop shows only the
# loop waiting in epoll. Shortly before it fires, print every asyncio task's stack too (into the
# test's captured output, shown with its failure): which await never returned.
DUMP_BEFORE_TIMEOUT = 15.0


def _dump_tasks(_signum, _frame) -> None:  # runs in the main thread, between two bytecodes of the loop
    import io
    import traceback

    loop = asyncio._get_running_loop()
    out = io.StringIO()
    if loop is None:
        print("(no running event loop)", file=out)
    else:
        for task in asyncio.all_tasks(loop):
            print(f"~~~ task {task.get_name()}: {task.get_coro()!r}", file=out)
            for frame in task.get_stack(limit=30):
                print("".join(traceback.format_stack(frame, limit=1)).rstrip(), file=out)
    print("+++ asyncio tasks +++\n" + out.getvalue(), flush=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    import signal
    import threading

    limit = item.config.getini("timeout")
    marker = item.get_closest_marker("timeout")
    seconds = float(marker.args[0]) if marker and marker.args else float(limit or 0)
    timer = None
    if seconds > DUMP_BEFORE_TIMEOUT and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR2, _dump_tasks)
        timer = threading.Timer(seconds - DUMP_BEFORE_TIMEOUT, os.kill, (os.getpid(), signal.SIGUSR2))
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
