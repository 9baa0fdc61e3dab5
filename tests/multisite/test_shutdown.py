"""Stopping a site while mail is arriving: every service's close() returns, whatever it was waiting for."""

from __future__ import annotations

import asyncio

from mailboxes.changes import FolderChanged

from tests.protocol.smtp.support import wait_for

from .test_documents_flow import make_site


async def test_the_intake_stops_when_a_change_arrives_as_it_is_closed(tmp_path):
    """A change event for the intake's INBOX published in the same moment as close() cancels its loop.

    With asyncio.wait_for (Python 3.11) the loop took the event instead of the cancellation, went on
    sweeping every 60 s, and close() never returned: the teardowns that hung past pytest-timeout."""
    site = await make_site(tmp_path, "city", "city.test")
    try:
        await site.intake.start()
        acct = await site.inst.mb.directory.account("documents@city.test")
        inbox = (await site.inst.mb.store.folder(acct, "INBOX")).ref
        bus = site.inst.mb.store.bus
        # Its first round done, the loop waits on its listener's queue (asyncio.Queue keeps its waiting getters).
        await wait_for(lambda: any(lst.queue._getters for lst in bus._listeners[inbox]), what="the intake idle")
        bus.publish(inbox, FolderChanged(inbox, 1, "append"))
        closing = asyncio.create_task(site.intake.close())
        done, _ = await asyncio.wait({closing}, timeout=10)  # (waits without cancelling: a cancel would end the loop)
        assert closing in done, "the intake's close() did not return"
        assert bus.listeners(inbox) == 0
    finally:
        await site.intake.close()
        await site.inst.stop()
