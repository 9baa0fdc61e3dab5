"""SMTP sessions name their task for the event-loop watchdog: listener and client address, nothing secret."""

from __future__ import annotations

import asyncio

from .support import RawClient


async def test_an_smtp_session_task_is_named(city):
    c = await RawClient.connect(city.port())
    try:
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert "smtp listener=smtp ip=127.0.0.1" in names, names
        code, _ = await c.cmd("EHLO client.test")
        assert code == 250
    finally:
        await c.cmd("QUIT")
        await c.close()
