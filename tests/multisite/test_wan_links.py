"""A city and a district joined through the fault proxy: a link that goes down is probed, not hammered; when it is back everything goes at once, urgent first, over a few reused connections.

The city's queue runs on an injected clock: probes and retries happen when the test moves it
and pokes the worker. The proxy counts connection attempts (the district's side of the link);
arrival order is the order of the district's inbox.
"""

from __future__ import annotations

import email
import uuid
from dataclasses import dataclass

import pytest

from delivery.outbound import LINK_CONNECTIONS
from delivery.priority import FLASH, IMMEDIATE
from delivery.submit import Submission
from tests.conftest import _create_pg_database
from tests.faultproxy import FaultProxy
from tests.protocol.smtp.support import FakeClock, Instance, make_config, message, start_instance, wait_for

SENDER = "office@city.test"
RECIPIENT = "wang@district.test"
ROUTINE_BATCH = 30


@dataclass
class Link:
    city: Instance
    district: Instance
    proxy: FaultProxy
    clock: FakeClock

    async def submit(self, subject: str, priority: int | None = None, body: str = "Hello.\r\n") -> None:
        out = await self.city.parts.submitter.submit(Submission(
            SENDER, (RECIPIENT,), message(subject, sender=SENDER, to=RECIPIENT, body=body), origin="bridge",
            priority=priority))
        assert out.accepted

    async def rows(self) -> list[tuple[str, int]]:
        return [(r.state, r.attempts) for e in await self.city.parts.queue.entries() for r in e.recipients]

    async def arrived(self) -> list[str]:
        return [email.message_from_bytes(m)["Subject"] for m in await self.district.inbox(RECIPIENT)]

    async def link_state(self):
        return (await self.city.parts.worker.links.states()).get(f"127.0.0.1:{self.proxy.port}")


@pytest.fixture
async def link(tmp_path):
    clock = FakeClock()
    district = await start_instance(make_config(tmp_path / "district", f"sqlite:///{tmp_path}/district.db",
                                                hostname="mail.district.test"), domains=("district.test",))
    proxy = FaultProxy("127.0.0.1", district.port("smtp"))
    await proxy.start()
    city = await start_instance(
        make_config(tmp_path / "city", f"sqlite:///{tmp_path}/city.db", hostname="mail.city.test",
                    queue={"retry_delays": [60, 300], "probe_delays": [5, 10, 30]}),
        domains=("city.test",), clock=clock)
    try:
        await city.add_user(SENDER)
        await district.add_user(RECIPIENT)
        await city.parts.routes.add("district.test", f"127.0.0.1:{proxy.port}", tls="opportunistic")
        yield Link(city, district, proxy, clock)
    finally:
        await city.stop()
        await proxy.close()
        await district.stop()


async def test_an_outage_is_probed_not_hammered_and_recovery_sends_all_at_once_urgent_first(link):
    s = link
    s.proxy.set_offline(True)
    for i in range(ROUTINE_BATCH):
        await s.submit(f"routine-{i:02d}")
    await s.submit("immediate-1 (jiaji)", IMMEDIATE)
    await s.submit("flash-1 (teji)", FLASH)
    await wait_for(lambda: _rows_are(s, ROUTINE_BATCH + 2, attempts=1), what="every row tried once (or parked)")
    assert s.proxy.counters.attempts == 1  # one connection found the link down; the rest waited for it
    state = await s.link_state()
    assert state.state == "down"

    # A long outage: only the probes connect, one at a time, on their back-off (5, 10, 30, 30... s),
    # while the rows come due on their own back-off (60, 300 s) and are parked again without a connection.
    for n in range(2, 8):
        s.clock.now = (await s.link_state()).next_probe_at
        s.city.parts.worker.poke()
        await wait_for(lambda n=n: _failures(s, n - 1), what=f"probe {n - 1} failed")
    s.clock.advance(61)
    s.city.parts.worker.poke()
    await wait_for(lambda: _rows_are(s, ROUTINE_BATCH + 2, attempts=2), what="rows due again and parked")
    await wait_for(lambda: _failures(s, 7), what="the probe due with them failed")
    assert s.proxy.counters.attempts == 1 + 7  # 32 messages, 2 attempts each, 8 connections: the probes
    assert await s.arrived() == []

    # The link is back: the next probe answers and everything waiting goes at once, though each row's
    # own next attempt is minutes away; urgent first.
    s.proxy.set_offline(False)
    before = s.proxy.counters.attempts
    next_probe = (await s.link_state()).next_probe_at
    waiting = [r.next_attempt_at for e in await s.city.parts.queue.entries() for r in e.recipients]
    assert min(waiting) > next_probe
    s.clock.now = next_probe
    s.city.parts.worker.poke()
    await wait_for(lambda: _count(s, ROUTINE_BATCH + 2), what="everything delivered after the probe")
    got = await s.arrived()
    assert got[:2] == ["flash-1 (teji)", "immediate-1 (jiaji)"]
    assert sorted(got[2:]) == [f"routine-{i:02d}" for i in range(ROUTINE_BATCH)]
    assert s.proxy.counters.attempts - before <= LINK_CONNECTIONS  # 32 messages over a few connections
    assert (await s.link_state()).state == "up"
    await wait_for(lambda: _rows_gone(s), what="an empty city queue")


async def test_messages_share_connections_when_the_link_is_up(link):
    s = link
    for i in range(40):
        await s.submit(f"m-{i:02d}")
    await wait_for(lambda: _count(s, 40), what="40 messages at the district")
    assert s.proxy.counters.attempts <= LINK_CONNECTIONS  # connections kept and reused across rounds
    assert sorted(await s.arrived()) == [f"m-{i:02d}" for i in range(40)]


async def _rows_are(s: Link, n: int, attempts: int) -> bool:
    rows = await s.rows()
    return len(rows) == n and all(st == "queued" and a == attempts for st, a in rows)


async def _failures(s: Link, n: int) -> bool:
    st = await s.link_state()
    return st is not None and st.failures == n and not st.probing


async def _count(s: Link, n: int) -> bool:
    return len(await s.district.inbox(RECIPIENT)) >= n


async def _rows_gone(s: Link) -> bool:
    return await s.rows() == []


async def test_a_connection_reset_in_the_middle_of_a_batch_loses_nothing_and_duplicates_nothing(link):
    s = link
    s.proxy.set_offline(True)  # gather a batch: everything waits for the link, then goes in one round
    for i in range(12):
        await s.submit(f"r-{i:02d}", body="a line of a 4 KB report, one of many.\r\n" * 100)
    await wait_for(lambda: _rows_are(s, 12, attempts=1), what="every row waiting for the link")
    s.proxy.set_offline(False)
    # The next connection (the probe's, which the batch then uses) breaks after about two and a half
    # messages of text; the lane opens another and goes on.
    s.proxy.reset_after(9_000, direction="up")
    s.clock.now = (await s.link_state()).next_probe_at
    s.city.parts.worker.poke()
    await wait_for(lambda: _settled(s, 12), what="every message delivered or back in the queue")
    assert s.proxy.counters.resets >= 1
    left = await s.rows()
    assert all(st == "queued" for st, _ in left) and len(left) <= 2  # the one(s) cut mid-text wait for a retry
    s.clock.advance(301)
    s.city.parts.worker.poke()
    await wait_for(lambda: _count(s, 12), what="the cut message(s) after their retry")
    assert sorted(await s.arrived()) == [f"r-{i:02d}" for i in range(12)]  # exactly once each
    await wait_for(lambda: _rows_gone(s), what="an empty city queue")


async def _settled(s: Link, n: int) -> bool:
    """Every message delivered, or back in the queue after its second attempt (the first found the link down)."""
    rows = await s.rows()
    return len(await s.district.inbox(RECIPIENT)) + len(rows) >= n and all(
        st == "queued" and a == 2 for st, a in rows)


@pytest.fixture
def city_pg_url(pg):
    name = "wan_" + uuid.uuid4().hex[:12]
    _create_pg_database(pg, name)
    return pg.url(name)


@pytest.mark.pg
async def test_two_city_nodes_on_one_postgresql_probe_a_down_link_once_per_interval(tmp_path, city_pg_url):
    clock = FakeClock()
    district = await start_instance(make_config(tmp_path / "district", f"sqlite:///{tmp_path}/district.db",
                                                hostname="mail.district.test"), domains=("district.test",))
    proxy = FaultProxy("127.0.0.1", district.port("smtp"))
    await proxy.start()
    nodes = []
    try:
        for i in range(2):
            nodes.append(await start_instance(
                make_config(tmp_path / f"city{i}", city_pg_url, hostname="mail.city.test",
                            queue={"retry_delays": [60, 300], "probe_delays": [5, 10]}),
                domains=("city.test",), clock=clock))
        await nodes[0].add_user(SENDER)
        await district.add_user(RECIPIENT)
        await nodes[0].parts.routes.add("district.test", f"127.0.0.1:{proxy.port}", tls="opportunistic")
        s = Link(nodes[0], district, proxy, clock)
        proxy.set_offline(True)
        for i in range(6):
            await s.submit(f"two-nodes-{i}")
        await wait_for(lambda: _rows_are(s, 6, attempts=1), what="every row waiting for the link")
        assert proxy.counters.attempts == 1
        for n in range(1, 5):  # both nodes wake for every probe; one of them probes
            clock.now = (await s.link_state()).next_probe_at
            for node in nodes:
                node.parts.worker.poke()
            await wait_for(lambda n=n: _failures(s, n), what=f"probe {n} failed")
        assert proxy.counters.attempts == 1 + 4
        assert sum(node.parts.worker.probes_ok for node in nodes) == 0
        proxy.set_offline(False)
        clock.now = (await s.link_state()).next_probe_at
        for node in nodes:
            node.parts.worker.poke()
        await wait_for(lambda: _count(s, 6), what="everything delivered after the probe")
        assert sorted(await s.arrived()) == [f"two-nodes-{i}" for i in range(6)]
        assert sum(node.parts.worker.probes_ok for node in nodes) == 1
        await wait_for(lambda: _rows_gone(s), what="an empty city queue")
    finally:
        for node in nodes:
            await node.stop()
        await proxy.close()
        await district.stop()
