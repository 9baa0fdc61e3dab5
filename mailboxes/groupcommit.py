"""Group commit: writes from concurrent sessions share one transaction and one disk sync.

There is no timer. The first request starts a commit at once; requests that
arrive while that commit (and its fsync) is under way queue up and go
together in the next one. A lone session is never delayed waiting for
company, and under load the number of syncs per second stays bounded while
the messages per sync grow.
"""

from __future__ import annotations

import asyncio
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
