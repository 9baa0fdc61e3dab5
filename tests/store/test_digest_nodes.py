"""Two nodes on one database send each person's digest of a period once: digest items are claimed with a lease (SKIP LOCKED on PostgreSQL)."""

from __future__ import annotations

import asyncio
import email
from datetime import datetime, timezone
from email import policy

from bridges import service as bridges_service
from tests.protocol.smtp.support import FakeClock, make_config, start_instance

from .test_event_worker import _post, _setup

ROUNDS = 4


async def test_two_nodes_send_one_digest_per_person_and_period(tmp_path, storage_url):
    clock = FakeClock(datetime(2026, 12, 4, 10, 20, tzinfo=timezone.utc))
    inst_a, parts_a, src = await _setup(tmp_path / "a", storage_url, clock)
    inst_b = await start_instance(make_config(tmp_path / "b", storage_url), clock=clock)
    inst_b.ctx.extras["clock"] = clock
    parts_b = bridges_service.build(inst_b.ctx)
    try:
        people = ("alice@city.test", "bob@city.test")
        for address in people:
            acct = await inst_a.mb.directory.account(address)
            await parts_a.store.set_preferences(acct.id, {"reminder": "hourly"})
        for k in range(12):
            await _post(parts_a, src, id=f"r{k}", title=f"Reminder {k}")
        assert await parts_a.worker.run_once() == 12  # all held for the 11:00 digests
        clock.now = datetime(2026, 12, 4, 11, 0, tzinfo=timezone.utc)
        sent = 0
        for _ in range(ROUNDS):  # both nodes' rounds at the same time, again and again
            a, b = await asyncio.gather(parts_a.worker.run_once(), parts_b.worker.run_once())
            sent += a + b
        assert sent == 2  # before the claim: 4 (each node sent both digests)
        for address in people:
            [digest] = await inst_a.inbox(address)
            text = email.message_from_bytes(digest, policy=policy.default).get_body(("plain",)).get_content()
            assert text.count("Reminder ") == 12 and all(f"Reminder {k}" in text for k in range(12))
        assert await parts_a.store.next_digest() is None
    finally:
        await parts_b.worker.close()
        await parts_a.worker.close()
        await inst_b.stop()
        await inst_a.stop()
