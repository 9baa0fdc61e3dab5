"""The durable queue's rows on SQLite and PostgreSQL: claims, settling, retry during an attempt, stale claims."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from delivery.queue import NewEntry, Queue, Settle


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


async def test_retry_during_an_attempt_wins_over_the_back_off(mb):
    clock = Clock()
    q = Queue(mb.router.central, node="node-a", clock=clock)
    try:
        await q.enqueue(NewEntry("Q1", "a@city.test", ("x@district.test",), b"Subject: x\r\n\r\nbody\r\n"))
        [c] = await q.claim(10)
        assert await q.claim(10) == []  # leased
        assert await q.retry("Q1") == 1  # the operator asks for a retry while it is being delivered
        await q.settle([Settle(c.recipient_id, "queued", 1, clock.now + timedelta(hours=1), "451 busy")])
        [entry] = await q.entries()
        assert entry.recipients[0].next_attempt_at <= clock.now  # due now, not in an hour
        [c2] = await q.claim(10)
        # Without a retry request the back-off applies.
        await q.settle([Settle(c2.recipient_id, "queued", 2, clock.now + timedelta(hours=1), "451 busy")])
        assert await q.claim(10) == []
        clock.now += timedelta(hours=1, seconds=1)
        assert len(await q.claim(10)) == 1
    finally:
        await q.close()


async def test_stale_claims_are_due_at_once_after_a_restart(mb):
    clock = Clock()
    q = Queue(mb.router.central, node="node-a", clock=clock)
    try:
        await q.enqueue(NewEntry("Q2", "a@city.test", ("x@district.test",), b"Subject: x\r\n\r\nbody\r\n"))
        assert len(await q.claim(10)) == 1
        assert await q.release_stale_claims() == 1  # as at start-up after a crash
        assert len(await q.claim(10)) == 1
    finally:
        await q.close()
