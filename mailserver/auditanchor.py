"""The server's audit anchor: every `server.audit_anchor_every` seconds the chain's head goes to the anchor file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone

from mailboxes import auditlog

log = logging.getLogger("postroom.audit")


class AuditAnchor:
    """Appends (sequence, hash, time) of the newest entry when it changed since the last anchor."""

    name = "audit-anchor"

    def __init__(self, ctx, every_s: float) -> None:
        self.ctx, self.every_s = ctx, every_s
        self.last_seq = -1
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def anchor_now(self) -> None:
        await self.ctx.mailboxes.directory.audit_buffer.flush()
        async with self.ctx.mailboxes.router.central.read() as conn:
            seq, digest = await auditlog.head(conn)
        if seq != self.last_seq:
            # The file write goes to a thread: a slow disk must not stall the event loop.
            await asyncio.to_thread(auditlog.write_anchor, self.ctx.config.audit_anchor_path, seq, digest,
                                    datetime.now(timezone.utc))
            self.last_seq = seq

    async def _loop(self) -> None:
        while True:
            try:
                await self.anchor_now()
            except Exception:  # noqa: BLE001 - try again next period
                log.exception("audit anchor not written")
            await asyncio.sleep(self.every_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.anchor_now()  # the last entries of this run are anchored too


async def start(ctx) -> list:
    every = ctx.config.get("server", "audit_anchor_every")
    if not every:
        return []
    svc = AuditAnchor(ctx, every)
    svc.start()
    return [svc]
