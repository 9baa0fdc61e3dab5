"""The loop shared by the background runners (the delivery queue's, the workflow events'): rounds until idle, then sleep until due or poked.

A runner subclasses `PolledLoop`, sets `_wake`, `_stopping` and `clock`, and provides
`run_once()` (how much a round did), `_next_due()` (the earliest due time it knows of, or None)
and `_max_sleep()` (seconds to sleep at most when nothing is due: rows other nodes wrote are
found within it). Time comes from the injected clock, so tests move it by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import datetime


async def nap(wake: asyncio.Event, cap: float, next_due: Callable[[], Awaitable[datetime | None]] | None,
              clock: Callable[[], datetime]) -> None:
    """A runner's idle wait: until `wake` is set, the next due time comes, or `cap` seconds pass."""
    delay = cap
    if next_due is not None:
        try:
            due = await next_due()
        except Exception:  # noqa: BLE001 - the database may be away for a moment; wake at the cap
            due = None
        if due is not None:
            delay = min(delay, max(0.0, (due - clock()).total_seconds()))
    if delay <= 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await wake.wait()


class PolledLoop(ABC):
    _wake: asyncio.Event
    _stopping: bool
    clock: Callable[[], datetime]
    log: logging.Logger

    @abstractmethod
    async def run_once(self) -> int: ...

    @abstractmethod
    async def _next_due(self) -> datetime | None: ...

    @abstractmethod
    def _max_sleep(self) -> float: ...

    async def _run(self) -> None:
        while not self._stopping:
            try:
                done = await self.run_once()
            except Exception:  # noqa: BLE001 - the database may be away for a moment; keep the runner alive
                self.log.exception("%s round failed", getattr(self, "name", "runner"))
                done = 0
            if done or self._stopping:
                continue
            await self._sleep()

    async def _sleep(self) -> None:
        await nap(self._wake, self._max_sleep(), self._next_due, self.clock)
        self._wake.clear()
