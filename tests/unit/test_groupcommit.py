"""Group commit: a lone request is written at once (no batch window), later ones share the next transaction, a failure is isolated.

LateGroupCommitter on a real SQLite database: requests that arrive while the writer waits share its transaction."""

from __future__ import annotations

import asyncio
import fcntl
import os

import pytest
from sqlalchemy.exc import IntegrityError

from mailboxes.db import open_database
from mailboxes.groupcommit import MAX_BATCH, GroupCommitter, LateGroupCommitter


class Recorder:
    """An apply function that records its batches and can be held until released."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.started = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        await self.release.wait()
        if any(i < 0 for i in items):
            raise ValueError("negative")
        return [i * 10 for i in items]


async def test_a_lone_request_is_applied_at_once_without_waiting_for_company():
    rec = Recorder(hold=True)
    gc = GroupCommitter(rec)
    task = asyncio.create_task(gc.submit(7))
    for _ in range(3):  # a few turns of the loop, no timer: the commit has already started
        await asyncio.sleep(0)
    assert rec.batches == [[7]]
    rec.release.set()
    assert await task == 70
    await gc.close()


async def test_requests_arriving_during_a_commit_go_together_in_the_next_one():
    rec = Recorder(hold=True)
    gc = GroupCommitter(rec)
    first = asyncio.create_task(gc.submit(1))
    await rec.started.wait()
    later = [asyncio.create_task(gc.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    assert rec.batches == [[1]]  # they wait for the commit under way, not for a timer
    rec.release.set()
    assert await first == 10 and [await t for t in later] == [20, 30, 40]
    assert rec.batches == [[1], [2, 3, 4]] and gc.batches == 2 and gc.items == 4
    await gc.close()


async def test_a_failing_batch_is_retried_one_by_one_and_only_the_bad_request_fails():
    rec = Recorder(hold=True)
    gc = GroupCommitter(rec)
    first = asyncio.create_task(gc.submit(1))
    await rec.started.wait()
    good, bad = asyncio.create_task(gc.submit(2)), asyncio.create_task(gc.submit(-1))
    await asyncio.sleep(0)
    rec.release.set()
    assert await first == 10 and await good == 20
    with pytest.raises(ValueError):
        await bad
    assert rec.batches == [[1], [2, -1], [2], [-1]]
    await gc.close()


async def test_a_batch_holds_at_most_max_batch_requests():
    rec = Recorder(hold=True)
    gc = GroupCommitter(rec)
    first = asyncio.create_task(gc.submit(0))
    await rec.started.wait()
    rest = [asyncio.create_task(gc.submit(i)) for i in range(1, MAX_BATCH + 2)]
    await asyncio.sleep(0)
    rec.release.set()
    await asyncio.gather(first, *rest)
    assert [len(b) for b in rec.batches] == [1, MAX_BATCH, 1]
    await gc.close()


# --- LateGroupCommitter: the batch is taken inside the write transaction --------------------


@pytest.fixture
async def db(tmp_path):
    """A real SQLite database (its writer lock file beside it) with a table of items."""
    d = open_database(f"sqlite:///{tmp_path}/late.db")
    await d.write_sync(lambda conn, _b: conn.exec_driver_sql("CREATE TABLE items (n INTEGER PRIMARY KEY CHECK (n >= 0))"))
    yield d
    await d.dispose()


def insert_sync(conn, items: list[int]) -> list[int]:
    conn.exec_driver_sql("INSERT INTO items (n) VALUES " + ",".join("(?)" for _ in items), tuple(items))
    return [i * 10 for i in items]


def answers(items: list[int], result: list[int]) -> list[int]:
    return result


async def stored(db) -> list[int]:
    return await db.read_sync(lambda conn: [r[0] for r in conn.exec_driver_sql("SELECT n FROM items ORDER BY n")])


async def writer_waiting(db) -> None:
    """Until a write has taken this process's writer connection (its thread then waits for the lock)."""
    deadline = asyncio.get_running_loop().time() + 10
    while db.writer.pool.checkedout() == 0:
        assert asyncio.get_running_loop().time() < deadline, "the write never started"
        await asyncio.sleep(0.001)


async def test_requests_that_arrive_while_the_writer_waits_for_another_process_share_its_transaction(db):
    """GroupCommitter took [1] before the wait and [2, 3, 4] after it: two transactions. Here one."""
    gc = LateGroupCommitter(db, insert_sync, answers)
    held = os.open(db.write_lock.path, os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process writing
        first = asyncio.create_task(gc.submit(1))
        await writer_waiting(db)  # GroupCommitter would have taken [1] by now
        later = [asyncio.create_task(gc.submit(i)) for i in (2, 3, 4)]
        await asyncio.sleep(0)
        assert not any(t.done() for t in [first, *later])  # nothing is committed while the lock is held
    finally:
        os.close(held)
    assert [await first] + [await t for t in later] == [10, 20, 30, 40]
    assert (gc.batches, gc.items) == (1, 4)
    assert await stored(db) == [1, 2, 3, 4]
    await gc.close()


async def test_a_failing_late_batch_is_rolled_back_and_retried_one_by_one(db):
    gc = LateGroupCommitter(db, insert_sync, answers)
    held = os.open(db.write_lock.path, os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        tasks = [asyncio.create_task(gc.submit(i)) for i in (5, -1, 6)]
        await asyncio.sleep(0)
    finally:
        os.close(held)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 50 and results[2] == 60
    assert isinstance(results[1], IntegrityError)  # the CHECK refused it: only it fails
    assert await stored(db) == [5, 6]  # the failed batch left nothing; each good one committed alone
    await gc.close()


async def test_a_lone_late_request_is_written_at_once_and_a_batch_holds_at_most_max_batch(db):
    gc = LateGroupCommitter(db, insert_sync, answers, max_batch=3)
    assert await gc.submit(0) == 0 and gc.batches == 1
    held = os.open(db.write_lock.path, os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        tasks = [asyncio.create_task(gc.submit(i)) for i in range(1, 8)]
        await asyncio.sleep(0)
    finally:
        os.close(held)
    assert await asyncio.gather(*tasks) == [i * 10 for i in range(1, 8)]
    assert (gc.batches, gc.items) == (1 + 3, 8)  # 3 + 3 + 1
    assert await stored(db) == list(range(8))
    await gc.close()
