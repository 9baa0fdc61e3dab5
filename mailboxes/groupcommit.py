"""Group commit: writes from concurrent sessions share one transaction and one disk sync.

There is no timer. The first request starts a commit at once; requests that
arrive while that commit (and its fsync) is under way queue up and go
together in the next one. A lone session is never delayed waiting for
company, and under load the number of syncs per second stays bounded while
the messages per sync grow.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 256  # requests per transaction at most


class GroupCommitter(Generic[T, R]):
    def __init__(self, apply: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        self._apply = apply
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self._apply([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - isolate the failing request
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            log.warning("group commit of %d failed (%s); retrying one by one", len(batch), exc)
            for one in batch:
                await self._commit([one])
            return
        for (_, fut), res in zip(batch, results):
            if not fut.done():
                fut.set_result(res)

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class LateGroupCommitter(Generic[T, R]):
    """Group commit whose batch is taken inside the write transaction, not before it waits for the writer.

    A GroupCommitter's batch is what queued while its previous commit ran; that batch then waits
    for the database's writer (this process's other transactions, and on SQLite every other
    process's: db.WriteLock), and what arrives during that wait goes in a batch of its own. With
    two worker processes on one SQLite file the workflow events' intake wrote ~4 events a
    transaction at 800 posts/s, and its transactions held the shared writer longer than all the
    deliveries did (bridges_bench, 2026-12-06). Here the function run in the writer's transaction
    takes what is queued when it starts, so a batch holds everything that arrived until then.

    `apply_sync(conn, items)` runs in the transaction (db.write_sync: on SQLite in the writer's
    thread, which holds the lock) and must only write; `finish(items, result)` turns its result
    into one answer per item, on the event loop, after the commit. A failed batch is retried one
    item per transaction, so one bad item fails alone.
    """

    def __init__(self, db, apply_sync: Callable[[object, list[T]], object],  # noqa: ANN001 - mailboxes.db.Database
                 finish: Callable[[list[T], object], list[R]], *, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._apply_sync = apply_sync
        self._finish = finish
        self._max = max_batch
        self._queue: collections.deque[tuple[T, asyncio.Future[R]]] = collections.deque()
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        while self._queue:
            taken: list[tuple[T, asyncio.Future[R]]] = []

            def txn(conn, _blocking):  # noqa: ANN001, ANN202 - in the writer's thread (SQLite)
                # deque.popleft is atomic: the event loop's thread only appends meanwhile
                while self._queue and len(taken) < self._max:
                    taken.append(self._queue.popleft())
                return self._apply_sync(conn, [item for item, _ in taken])

            try:
                raw = await self._db.write_sync(txn)
            except Exception as exc:  # noqa: BLE001 - isolate the failing request
                if not taken:  # failed before it took any (the database away): each queued item tries alone
                    while self._queue and len(taken) < self._max:
                        taken.append(self._queue.popleft())
                await self._one_by_one(taken, exc)
                continue
            self._settle(taken, raw)

    def _settle(self, taken: list[tuple[T, asyncio.Future[R]]], raw: object) -> None:
        self.batches += 1
        self.items += len(taken)
        results = self._finish([item for item, _ in taken], raw)
        for (_, fut), res in zip(taken, results):
            if not fut.done():
                fut.set_result(res)

    async def _one_by_one(self, taken: list[tuple[T, asyncio.Future[R]]], exc: Exception) -> None:
        if len(taken) == 1:
            if not taken[0][1].done():
                taken[0][1].set_exception(exc)
            return
        log.warning("group commit of %d failed (%s); retrying one by one", len(taken), exc)
        for item, fut in taken:
            try:
                raw = await self._db.write_sync(lambda conn, _blocking, i=item: self._apply_sync(conn, [i]))
            except Exception as one:  # noqa: BLE001 - this request's own failure
                if not fut.done():
                    fut.set_exception(one)
                continue
            self._settle([(item, fut)], raw)

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
