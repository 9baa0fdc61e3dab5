"""Queue priority and link state on SQLite and PostgreSQL: urgent rows are claimed first, one node probes a down link, the probe's success releases what waited."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from delivery.links import Links
from delivery.priority import FLASH, IMMEDIATE, ROUTINE
from delivery.queue import NewEntry, Queue, Settle
from tests.support.clock import Clock

MSG = b"Subject: x\r\n\r\nbody\r\n"


async def test_claims_take_flash_then_immediate_then_routine_oldest_first_in_each(mb):
    clock = Clock()
    q = Queue(mb.router.central, node="node-a", clock=clock)
    try:
        for i, prio in enumerate([ROUTINE, ROUTINE, IMMEDIATE, FLASH, ROUTINE, IMMEDIATE]):
            await q.enqueue(NewEntry(f"Q{i}", "a@city.test", (f"x{i}@district.test",), MSG, priority=prio))
            clock.move(seconds=1)
        got = [c.queue_id for c in await q.claim(4)]
        assert got == ["Q3", "Q2", "Q5", "Q0"]
        assert [c.priority for c in await q.claim(10)] == [ROUTINE, ROUTINE]
    finally:
        await q.close()


async def test_one_node_wins_a_probe_and_a_failed_probe_backs_off(mb):
    clock = Clock()
    nodes = [Links(mb.router.central, node=f"node-{i}", clock=clock, delays=(5, 10, 30)) for i in range(4)]
    a = nodes[0]
    assert await a.mark_down("district.test:25", "cannot connect") is True
    assert await nodes[1].mark_down("district.test:25", "cannot connect") is False  # already down: no new timer
    assert await a.down() == {"district.test:25"}
    assert await a.claim_probes() == []  # not due for 5 s
    clock.move(seconds=5)
    won = await asyncio.gather(*(n.claim_probes() for n in nodes for _ in range(3)))
    assert sorted(sum(won, [])) == ["district.test:25"]  # twelve racing claims, one probe
    winner = nodes[[i for i, w in enumerate(won) if w][0] // 3]
    await winner.probe_failed("district.test:25", "still refused")
    state = (await a.states())["district.test:25"]
    assert (state.state, state.failures, state.probing) == ("down", 1, False)
    assert state.next_probe_at == clock.now + timedelta(seconds=10)
    clock.move(seconds=10)
    assert await nodes[2].claim_probes() == ["district.test:25"]
    await nodes[2].probe_failed("district.test:25", "still refused")
    assert (await a.states())["district.test:25"].next_probe_at == clock.now + timedelta(seconds=30)
    assert await a.next_probe() == clock.now + timedelta(seconds=30)


async def test_a_probe_whose_node_died_is_taken_over_after_its_lease(mb):
    clock = Clock()
    a, b = (Links(mb.router.central, node=n, clock=clock, delays=(5,)) for n in ("a", "b"))
    await a.mark_down("h:25", "x")
    clock.move(seconds=5)
    assert await a.claim_probes() == ["h:25"]
    clock.move(seconds=30)
    assert await b.claim_probes() == []  # a's probe is still running
    clock.move(seconds=31)
    assert await b.claim_probes() == ["h:25"]


async def test_the_link_coming_up_releases_every_row_waiting_for_it_at_once(mb):
    clock = Clock()
    q = Queue(mb.router.central, node="node-a", clock=clock)
    links = Links(mb.router.central, node="node-a", clock=clock)
    try:
        for i in range(5):
            await q.enqueue(NewEntry(f"W{i}", "a@city.test", (f"x{i}@district.test",), MSG,
                                     priority=FLASH if i == 4 else ROUTINE))
        await q.enqueue(NewEntry("OTHER", "a@city.test", ("y@elsewhere.test",), MSG))
        claimed = await q.claim(10)
        await links.mark_down("district.test:25", "refused")
        # Each waits on its own back-off (an hour, two hours...) and for the link.
        await q.settle([Settle(c.recipient_id, "queued", 3, clock.now + timedelta(hours=1 + i), "link down",
                               link=None if c.queue_id == "OTHER" else "district.test:25")
                        for i, c in enumerate(claimed)])
        assert await q.claim(10) == []
        clock.move(seconds=10)
        assert await links.mark_up("district.test:25") == 5
        again = await q.claim(10)
        assert [c.queue_id for c in again] == ["W4", "W0", "W1", "W2", "W3"]  # urgent first, nothing waits
        assert {c.attempts for c in again} == {3}  # their counters (and so their expiry) are kept
        assert (await links.states())["district.test:25"].state == "up"
        assert await links.down() == set()
    finally:
        await q.close()
