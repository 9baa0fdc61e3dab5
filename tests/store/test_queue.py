"""The durable queue's rows on SQLite and PostgreSQL: claims, settling, retry during an attempt, stale claims."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from delivery.queue import DEFAULT_LEASE, NewEntry, Queue, Settle, node_id


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


async def test_a_restarted_node_takes_up_its_old_claims_when_their_lease_ends(mb):
    clock = Clock()
    before = Queue(mb.router.central, node=node_id("mail.city.test"), clock=clock)
    after = Queue(mb.router.central, node=node_id("mail.city.test"), clock=clock)  # the same host, restarted
    try:
        await before.enqueue(NewEntry("Q2", "a@city.test", ("x@district.test",), b"Subject: x\r\n\r\nbody\r\n"))
        assert len(await before.claim(10)) == 1
        assert await after.release_stale_claims() == 0  # still leased: never released by a name match
        assert await after.claim(10) == []
        clock.now += DEFAULT_LEASE + timedelta(seconds=1)
        assert await after.release_stale_claims() == 1  # the lease ran out: due at once
        assert len(await after.claim(10)) == 1
    finally:
        await before.close()
        await after.close()


async def test_a_restarting_node_leaves_its_peers_claims_alone(mb):
    """Shared PostgreSQL: node B restarting (same host name as A) must not release A's live claims."""
    clock = Clock()
    a = Queue(mb.router.central, node=node_id("mail.city.test"), clock=clock)
    b = Queue(mb.router.central, node=node_id("mail.city.test"), clock=clock)
    try:
        assert a.node != b.node
        await a.enqueue(NewEntry("Q3", "a@city.test", ("y@district.test",), b"Subject: y\r\n\r\nbody\r\n"))
        (claim,) = await a.claim(10)
        assert await b.release_stale_claims() == 0
        assert await b.claim(10) == []
        # A's settle still applies: the claim is A's.
        await a.settle([Settle(claim.recipient_id, "sent", 1, None, None)])
        assert await a.pending_count() == 0
    finally:
        await a.close()
        await b.close()


def test_node_ids_are_unique_per_process_and_fit_the_column():
    ids = {node_id("h" * 300) for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) <= 64 and f"/{os.getpid()}/" in i for i in ids)


async def test_a_renewed_lease_outlives_its_first_term_and_keeps_a_retry_request(mb):
    clock = Clock()
    a = Queue(mb.router.central, node=node_id("mail.city.test"), clock=clock)
    b = Queue(mb.router.central, node=node_id("mail.city.test"), clock=clock)
    try:
        await a.enqueue(NewEntry("Q4", "a@city.test", ("z@district.test",), b"Subject: z\r\n\r\nbody\r\n"))
        (claim,) = await a.claim(10)
        clock.now += DEFAULT_LEASE - timedelta(seconds=1)
        assert await a.renew([claim.recipient_id]) == 1
        assert await b.renew([claim.recipient_id]) == 0  # only the holder renews
        clock.now += timedelta(seconds=2)  # past the first term: still A's
        assert await b.release_stale_claims() == 0 and await b.claim(10) == []
        clock.now += DEFAULT_LEASE  # A died and stopped renewing
        assert await b.release_stale_claims() == 1
        assert len(await b.claim(10)) == 1
    finally:
        await a.close()
        await b.close()
