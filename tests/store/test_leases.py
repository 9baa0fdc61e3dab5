"""Named leases: one holder at a time across stores (nodes) on one database, taken over when they expire."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from mailboxes.leases import Leases
from tests.support.clock import Clock


async def test_one_holder_at_a_time_renewal_expiry_and_release(two_stores):
    m1, m2, _ = two_stores
    clock = Clock()
    a, b = Leases(m1.router.central, clock=clock), Leases(m2.router.central, clock=clock)
    assert await a.acquire("intake", "node-a", ttl=30)
    assert not await b.acquire("intake", "node-b", ttl=30)
    assert (await b.holder("intake"))[0] == "node-a"
    clock.now += timedelta(seconds=20)
    assert await a.acquire("intake", "node-a", ttl=30)  # renewed: runs to 50 s now
    clock.now += timedelta(seconds=20)
    assert not await b.acquire("intake", "node-b", ttl=30)
    clock.now += timedelta(seconds=11)  # node-a stopped renewing: expired
    assert await b.holder("intake") is None
    assert await b.acquire("intake", "node-b", ttl=30)
    assert not await a.acquire("intake", "node-a", ttl=30)
    await b.release("intake", "node-b")
    assert await a.acquire("intake", "node-a", ttl=30)
    await b.release("intake", "node-b")  # not the holder: nothing happens
    assert (await a.holder("intake"))[0] == "node-a"
    assert await b.acquire("other", "node-b", ttl=30)  # names are independent


async def test_racing_first_acquisitions_give_exactly_one_holder(two_stores):
    m1, m2, _ = two_stores
    stores = [Leases(m.router.central) for m in (m1, m2)]
    got = await asyncio.gather(*(stores[i % 2].acquire("job", f"node-{i}", ttl=30) for i in range(8)))
    assert got.count(True) == 1
    winner = f"node-{got.index(True)}"
    assert (await stores[0].holder("job"))[0] == winner
