"""The retention job: runs mailboxes.retention on a schedule in every serving process; per-account claims make one node do each account."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from mailboxes import retention
from mailboxes.documents import register_folders

log = logging.getLogger("postroom.retention")


class RetentionJob:
    name = "retention"

    def __init__(self, store, interval: float, first_delay: float,
                 records: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.store = store
        self.records = records  # folders retention leaves alone (mailboxes.documents.register_folders)
        self.interval = interval
        self.first_delay = first_delay
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> RetentionJob:
        if self.interval > 0:
            self._task = asyncio.create_task(self._run(), name="retention")
        return self

    async def _run(self) -> None:
        delay = min(self.first_delay, self.interval)
        while not await self._wait(delay):
            try:
                # An account another node did within half an interval is not redone (retention.claim).
                rep = await retention.run(self.store, min_interval=timedelta(seconds=self.interval / 2),
                                          records=self.records)
                if rep.items:
                    log.info("retention: %d accounts, %d deleted, %d archived, %d kept by legal holds",
                             rep.accounts, rep.deleted, rep.archived, rep.kept)
            except Exception:  # one bad run must not end the schedule
                log.exception("retention run failed")
            delay = self.interval

    async def _wait(self, seconds: float) -> bool:
        """True when asked to stop, else after `seconds`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


async def start(ctx) -> list:
    """The composition root's starter."""
    cfg = ctx.config
    return [RetentionJob(ctx.mailboxes.store, cfg.get("retention", "interval"), cfg.get("retention", "first_delay"),
                         register_folders(cfg.get("documents", "address"))).start()]
