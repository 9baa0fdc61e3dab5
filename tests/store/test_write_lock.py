"""Writers of several processes on one SQLite file take turns through the OS lock (mailboxes/db.py WriteLock)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import text

from mailboxes.db import open_database

ROUNDS = 200  # write transactions per process

HOLDER = textwrap.dedent("""
    import sys, time
    from mailboxes.db import open_database
    db = open_database(sys.argv[1])
    db.write_lock.acquire_here()
    print("held", flush=True)
    time.sleep(600)
""")

WRITER = textwrap.dedent("""
    import asyncio, sys
    from sqlalchemy import text
    from mailboxes.db import open_database

    async def main():
        db = open_database(sys.argv[1])
        for _ in range(int(sys.argv[2])):
            async with db.write() as conn:  # read, then write: lost without one writer at a time
                top = (await conn.execute(text("SELECT coalesce(max(n), 0) FROM counter"))).scalar()
                await conn.execute(text("INSERT INTO counter (n, who) VALUES (:n, 'child')"), {"n": top + 1})
            await db.write_sync(lambda c, _b: c.execute(text(
                "INSERT INTO counter (n, who) SELECT max(n) + 1, 'child' FROM counter")))
        await db.dispose()
    asyncio.run(main())
""")


@contextlib.asynccontextmanager
async def _held(url: str):
    """(holder, db): another process holds the write lock of a new database until killed; db is ours."""
    await _table(url)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True)
    db = open_database(url)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder, db
    finally:
        if holder.poll() is None:
            holder.kill()
        await db.dispose()


async def _table(url: str) -> None:
    db = open_database(url)
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE counter (n INTEGER PRIMARY KEY, who TEXT NOT NULL)"))
    finally:
        await db.dispose()


@pytest.mark.slow
async def test_writers_of_two_processes_both_progress_and_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/two.db"
    await _table(url)
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, url, str(ROUNDS))
    db = open_database(url)
    try:
        for _ in range(ROUNDS):
            async with db.write() as conn:
                top = (await conn.execute(text("SELECT coalesce(max(n), 0) FROM counter"))).scalar()
                await conn.execute(text("INSERT INTO counter (n, who) VALUES (:n, 'parent')"), {"n": top + 1})
            await db.write_sync(lambda c, _b: c.execute(text(
                "INSERT INTO counter (n, who) SELECT max(n) + 1, 'parent' FROM counter")))
        assert await asyncio.wait_for(child.wait(), 120) == 0
        async with db.read() as conn:
            rows = (await conn.execute(text("SELECT n, who FROM counter ORDER BY n"))).all()
    finally:
        await db.dispose()
    assert [n for n, _ in rows] == list(range(1, 4 * ROUNDS + 1))  # every transaction's row, none lost
    assert sum(who == "child" for _, who in rows) == sum(who == "parent" for _, who in rows) == 2 * ROUNDS


@pytest.mark.slow
async def test_a_writer_waits_for_another_process_and_goes_on_when_it_is_killed(tmp_path):
    async with _held(f"sqlite:///{tmp_path}/held.db") as (holder, db):
        async def write() -> None:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO counter (n, who) VALUES (1, 'after')"))

        waiting = asyncio.ensure_future(write())
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done  # the other process holds the lock: this writer waits (off the event loop)
        holder.kill()  # SIGKILL: no clean-up in the holder; the kernel releases its lock
        holder.wait(30)
        await asyncio.wait_for(waiting, 30)
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT who FROM counter"))).scalars().all() == ["after"]


@pytest.mark.slow
async def test_a_cancelled_waiter_gives_the_lock_back(tmp_path):
    async with _held(f"sqlite:///{tmp_path}/cancel.db") as (holder, db):
        first = asyncio.ensure_future(db.write_lock.acquire())
        done, _ = await asyncio.wait({first}, timeout=0.2)
        assert not done
        first.cancel()  # e.g. a client gone while its delivery waited
        holder.kill()
        holder.wait(30)
        async with db.write() as conn:  # the lock the cancelled waiter got in its thread was given back
            await asyncio.wait_for(conn.execute(text("INSERT INTO counter (n, who) VALUES (1, 'next')")), 30)
