"""SQLite's one-hop transactions (Database.read_sync, write_sync): each connection used in its own thread, statements compiled once per pool."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from mailboxes import schema as t
from mailboxes.db import open_database
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER

READERS = 4


async def test_concurrent_reads_each_use_their_own_connection_and_share_one_compiled_statement(tmp_path):
    url = f"sqlite:///{tmp_path}/postroom.db"
    mb = await open_mailboxes(StorageConfig(url=url), hasher=FAST_HASHER)
    await mb.close()
    db = open_database(url)
    try:
        stmt = select(t.folders.c.id).where(t.folders.c.id == -1)
        inside = threading.Barrier(READERS, timeout=30)  # all READERS transactions open at once: READERS connections

        def read(conn):
            raw = conn.connection.driver_connection
            inside.wait()
            return threading.get_ident(), id(raw), conn.execute(stmt).all()

        seen = await asyncio.gather(*(db.read_sync(read) for _ in range(READERS)))
        assert [rows for _, _, rows in seen] == [[]] * READERS
        assert len({thread for thread, _, _ in seen}) == READERS  # each in the thread of its connection
        assert len({raw for _, raw, _ in seen}) == READERS  # and on that connection, not a shared one
        (engine,) = [b.engine for immediate, b in db._bound.items() if not immediate]
        compiled = [k for k in engine._compiled_cache if "folders" in str(k[1])] if engine._compiled_cache else []
        assert len(compiled) == 1  # compiled once for the four connections (an engine each compiled it four times)
        # The same connections serve the next reads, each still its own thread's.
        again = await asyncio.gather(*(db.read_sync(read) for _ in range(READERS)))
        assert {(th, raw) for th, raw, _ in again} == {(th, raw) for th, raw, _ in seen}
    finally:
        await db.dispose()


async def test_opening_makes_the_engines_before_the_first_client(tmp_path):
    mb = await open_mailboxes(StorageConfig(url=f"sqlite:///{tmp_path}/postroom.db"), hasher=FAST_HASHER)
    try:
        assert set(mb.router.central._bound) == {True, False}  # writer's and readers' engines, set up
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("a@city.test", password="pw")
        folder = await mb.store.folder(acct, "INBOX")
        assert await mb.store.claim_recent(folder.ref, 0) == 0  # the warmed writer still writes
    finally:
        await mb.close()


# --- write_sync functions that wait together share a transaction, each in a SAVEPOINT ------------


async def _scratch(tmp_path):
    db = open_database(f"sqlite:///{tmp_path}/scratch.db")
    await db.write_sync(lambda conn, _b: conn.exec_driver_sql("CREATE TABLE rows (x INTEGER PRIMARY KEY)"))
    begins = []
    event.listen(db._bound[True].engine, "begin", lambda _conn: begins.append(1))
    return db, begins


def _insert(x):
    def fn(conn, _blocking):
        conn.exec_driver_sql(f"INSERT INTO rows VALUES ({x})")
        return x
    return fn


async def _stored(db) -> list[int]:
    return await db.read_sync(lambda conn: [r[0] for r in conn.exec_driver_sql("SELECT x FROM rows ORDER BY x")])


async def _behind_a_held_writer(db, queue):
    """Run `queue()` (which calls write_sync) while the writer's thread is inside another function."""
    inside, go_on = threading.Event(), threading.Event()

    def hold(conn, _blocking):
        inside.set()
        assert go_on.wait(30)
        return "held"

    first = asyncio.ensure_future(db.write_sync(hold))
    assert await asyncio.to_thread(inside.wait, 30)
    waiting = [asyncio.ensure_future(w) for w in queue()]
    await asyncio.sleep(0)  # one turn of the loop: each write_sync queues its function (before its first await)
    assert len(db._jobs) == len(waiting)
    go_on.set()
    return await first, await asyncio.gather(*waiting, return_exceptions=True)


async def test_write_functions_waiting_together_share_one_transaction_and_a_failing_one_loses_only_its_own_rows(tmp_path):
    db, begins = await _scratch(tmp_path)
    try:
        def fails(conn, _blocking):
            conn.exec_driver_sql("INSERT INTO rows VALUES (20)")
            raise LookupError("refused")

        def sees(conn, _blocking):  # what those before it in the transaction wrote
            return [r[0] for r in conn.exec_driver_sql("SELECT x FROM rows ORDER BY x")]

        held, answers = await _behind_a_held_writer(
            db, lambda: [db.write_sync(_insert(1)), db.write_sync(fails), db.write_sync(_insert(3)), db.write_sync(sees)])
        assert held == "held"
        assert answers[0] == 1 and answers[2] == 3
        assert isinstance(answers[1], LookupError) and str(answers[1]) == "refused"
        assert answers[3] == [1, 3]  # 20 was rolled back with its function's SAVEPOINT
        assert len(begins) == 2  # the held function's transaction, then one for the four
        assert await _stored(db) == [1, 3]
        # An IntegrityError (a row already there) is a function's own error too.
        _, answers = await _behind_a_held_writer(db, lambda: [db.write_sync(_insert(1)), db.write_sync(_insert(4))])
        assert isinstance(answers[0], IntegrityError) and answers[1] == 4
        assert await _stored(db) == [1, 3, 4]
    finally:
        await db.dispose()


async def test_a_lost_transaction_fails_every_function_in_it_and_keeps_none_of_their_rows(tmp_path):
    db, _ = await _scratch(tmp_path)
    try:
        def loses_it(conn, _blocking):  # as SQLite does on a full disk: the whole transaction rolled back
            conn.connection.driver_connection.execute("ROLLBACK")
            raise OSError("database or disk is full")

        _, answers = await _behind_a_held_writer(
            db, lambda: [db.write_sync(_insert(1)), db.write_sync(loses_it), db.write_sync(_insert(2))])
        assert all(isinstance(a, OSError) and "disk is full" in str(a) for a in answers), answers
        assert await _stored(db) == []
        assert await db.write_sync(_insert(5)) == 5  # the writer goes on
        assert await _stored(db) == [5]
    finally:
        await db.dispose()


async def test_a_write_whose_caller_was_cancelled_while_it_waited_is_not_run(tmp_path):
    db, _ = await _scratch(tmp_path)
    try:
        def queue():
            doomed = asyncio.ensure_future(db.write_sync(_insert(7)))
            kept = asyncio.ensure_future(db.write_sync(_insert(8)))
            asyncio.get_running_loop().call_soon(doomed.cancel)
            return [doomed, kept]

        _, answers = await _behind_a_held_writer(db, queue)
        assert isinstance(answers[0], asyncio.CancelledError) and answers[1] == 8
        assert await _stored(db) == [8]
    finally:
        await db.dispose()
