"""Workflow events in the central database, on SQLite and PostgreSQL: one row per (source, id) across nodes, claims, resend, preferences."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mailboxes import pgbus
from mailboxes.apitokens import ApiTokens
from mailboxes.errors import AlreadyExists, InvalidInput
from mailboxes.events import DELIVERING, PENDING, SENT, WAKE_TOPIC, EventStore, NewEvent, Sources
from tests.protocol.smtp.support import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 10, 20, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def new(source_id: int, ext_id: str, account_id: int, *, title: str = "t", queue_id: str = "Q1") -> NewEvent:
    return NewEvent(source_id, ext_id, "reminder", ext_id, "normal", "zh", {"title": title, "body": "b"},
                    title.encode().ljust(32, b"\0"), ((account_id, "a@city.test"),), (), queue_id)


async def test_one_row_per_source_and_id_across_two_nodes(two_stores):
    m1, m2, a = two_stores
    src, secret, tok = await Sources(m1.router.central).add("OA")
    assert src.name == "oa" and tok.kind == "source" and tok.source_id == src.id and tok.owner_id is None
    with pytest.raises(AlreadyExists):
        await Sources(m2.router.central).add("oa")
    with pytest.raises(InvalidInput):
        await Sources(m2.router.central).add("no spaces")
    s1, s2 = EventStore(m1.router.central), EventStore(m2.router.central)
    try:
        results = await asyncio.gather(*(s.accept([new(src.id, "e1", a.id, queue_id=f"Q{i}")])
                                         for i, s in enumerate((s1, s2, s1, s2))))
        rows = [r for [r] in results]
        assert len({ev.id for ev, _ in rows}) == 1 and sum(created for _, created in rows) == 1
        assert len({ev.queue_id for ev, _ in rows}) == 1  # every answer is the first row's
        assert await s1.counts() == {PENDING: 1}
        # another source may use the same id
        other, _, _ = await Sources(m1.router.central).add("docs")
        [(ev, created)] = await s2.accept([new(other.id, "e1", a.id)])
        assert created and await s1.counts() == {PENDING: 2}
        assert (await s1.find(src.id, "e1")).id == rows[0][0].id and await s1.find(src.id, "nope") is None
    finally:
        await s1.close()
        await s2.close()


async def test_a_new_token_racing_the_revocation_of_its_source_never_outlives_it(two_stores):
    """Two nodes: one makes tokens while the other revokes the source; once revoked, no token of it is live."""
    m1, m2, _ = two_stores
    for round_ in range(5):
        name = f"race{round_}"
        src, _, _ = await Sources(m1.router.central).add(name)

        async def make() -> str | None:
            try:
                return (await Sources(m1.router.central).new_token(name))[1]
            except InvalidInput:  # the revocation came first
                return None
        made = await asyncio.gather(*(make() for _ in range(4)), Sources(m2.router.central).revoke(name),
                                    *(make() for _ in range(4)))
        secrets = [s for s in made[:4] + made[5:] if s is not None]
        assert [await ApiTokens(m2.router.central).find(s) for s in secrets] == [None] * len(secrets), round_
        assert all(tok.revoked_at is not None for tok in await Sources(m1.router.central).tokens_of(src.id))
    with pytest.raises(InvalidInput):
        await Sources(m1.router.central).new_token("race0")


async def test_claims_lease_settle_and_resend(two_stores):
    m1, m2, a = two_stores
    clock = Clock()
    src, _, _ = await Sources(m1.router.central).add("oa")
    s1 = EventStore(m1.router.central, clock=clock, lease=timedelta(seconds=30))
    s2 = EventStore(m2.router.central, clock=clock, lease=timedelta(seconds=30))
    try:
        await s1.accept([new(src.id, f"e{i}", a.id) for i in range(3)])
        got = await s1.claim(10)
        assert [e.attempts for e in got] == [0, 0, 0] and await s2.claim(10) == []  # held by node 1
        assert await s1.counts() == {DELIVERING: 3}
        await s1.settle(got[0].id, SENT)
        await s1.settle(got[1].id, PENDING, error="451 later", retry_at=clock.now + timedelta(minutes=5))
        clock.now += timedelta(seconds=31)  # node 1 died holding the third: its lease lapses
        [again] = await s2.claim(10)
        assert again.id == got[2].id and again.attempts == 1  # the worker knows it was interrupted
        assert await s2.next_due() == clock.now + timedelta(seconds=30)  # its lease, before the retry
        with pytest.raises(InvalidInput):
            await s1.resend(got[2].id, "NEW")  # still delivering
        await s2.settle(again.id, SENT)
        clock.now += timedelta(minutes=5)
        [retry] = await s2.claim(10)
        assert retry.id == got[1].id and retry.attempts == 1
        assert await s2.next_due() == clock.now + timedelta(seconds=30)
        sent = await s1.get(got[0].id)
        assert sent.state == SENT and sent.sent_at == clock.now - timedelta(minutes=5, seconds=31)
        resent = await s1.resend(sent.id, "NEW")
        assert (resent.state, resent.queue_id, resent.attempts, resent.sent_at) == (PENDING, "NEW", 0, None)
        assert [e.id for e in await s1.list(state=PENDING)] == [sent.id]
    finally:
        await s1.close()
        await s2.close()


async def test_settles_that_share_a_transaction_share_one_update_and_each_learns_whether_it_changed_its_row(two_stores):
    m1, m2, a = two_stores
    clock = Clock()
    src, _, _ = await Sources(m1.router.central).add("oa")
    s1 = EventStore(m1.router.central, clock=clock, lease=timedelta(seconds=30))
    s2 = EventStore(m2.router.central, clock=clock, lease=timedelta(seconds=30))
    updates: list[str] = []
    engine = Engine  # every engine: SQLite's writes run on engines bound to the writer's thread

    def seen(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("UPDATE EVENTS"):
            updates.append(statement)
    hooked: list[tuple[int, str]] = []
    s1.settle_hooks.append(lambda _conn, final: hooked.extend((ev.id, state) for ev, state, _error in final))
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await s1.accept([new(src.id, f"e{i}", a.id) for i in range(6)])
        got = await s1.claim(10)
        clock.now += timedelta(seconds=31)  # node 1's lease on the last one lapses: node 2 takes it
        [lapsed] = await s2.claim(1)
        assert lapsed.id == got[0].id and lapsed.attempts == 1
        updates.clear()
        results = await asyncio.gather(
            *(s1.settle(ev.id, SENT, claimed=ev) for ev in got[1:4]),  # alike: one UPDATE
            s1.settle(got[1].id, SENT, claimed=got[1]),  # the same one again: settled already
            s1.settle(got[0].id, SENT, claimed=got[0]),  # node 1's lapsed claim: node 2's now
            s1.settle(got[4].id, PENDING, error="451 later", retry_at=clock.now + timedelta(minutes=5), claimed=got[4]),
            s1.settle(got[5].id, "failed", error="550 no", claimed=got[5]))
        assert results == [True, True, True, False, False, True, True]
        assert len(updates) == 4  # the three sent alike and node 1's, whose row does not match; pending; failed; again
        assert sorted(hooked) == sorted([(ev.id, SENT) for ev in got[1:4]] + [(got[5].id, "failed")])
        rows = {ev.id: await s1.get(ev.id) for ev in got}
        assert [rows[ev.id].state for ev in got] == [DELIVERING, SENT, SENT, SENT, PENDING, "failed"]
        assert rows[got[4].id].last_error == "451 later" and rows[got[5].id].last_error == "550 no"
        assert await s2.settle(lapsed.id, SENT, claimed=lapsed) is True
    finally:
        event.remove(engine, "before_cursor_execute", seen)
        await s1.close()
        await s2.close()


async def test_preferences_and_digest_items(mb):
    a = await mb.add_account("a@city.test", password="pw")
    b = await mb.add_account("b@city.test", password="pw")
    src, _, _ = await Sources(mb.router.central).add("oa")
    clock = Clock()
    store = EventStore(mb.router.central, clock=clock)
    try:
        assert await store.set_preferences(a.id, {"reminder": "hourly", "document_arrived": "daily"}) == {
            "reminder": "hourly", "document_arrived": "daily"}
        assert await store.set_preferences(a.id, {"document_arrived": "immediate"}) == {"reminder": "hourly"}
        with pytest.raises(InvalidInput):
            await store.set_preferences(a.id, {"reminder": "weekly"})
        assert await store.modes([a.id, b.id], "reminder") == {a.id: "hourly"}
        [(ev, _)] = await store.accept([new(src.id, "e1", a.id)])
        due = datetime(2026, 12, 4, 11, tzinfo=timezone.utc)
        await store.add_digest_items(ev.id, {a.id: due})
        await store.add_digest_items(ev.id, {a.id: due})  # idempotent: a retried delivery holds it once
        assert await store.next_digest() == due
        assert await store.next_times() == (clock.now, due)  # the pending event (due since its post), the digest
        assert await store.due_digests(10, 10) == {}  # not yet
        clock.now = due
        [(who, [item])] = (await store.due_digests(10, 10)).items()
        assert who == a.id and item.event.id == ev.id
        await store.digest_sent([item.id])
        assert await store.due_digests(10, 10) == {} and await store.next_digest() is None
    finally:
        await store.close()


async def test_new_events_wake_the_other_nodes_only_when_asked(two_stores):
    """PostgreSQL: the insert's NOTIFY wakes the other nodes' events workers, unless this node's worker takes
    the events itself (EventStore.wake_others: a trickle posted while it sleeps)."""
    m1, m2, a = two_stores
    if m1.router.central.dialect != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's")
    woken: list[str] = []  # in the order node 2 heard them ("ready" ones apart: several may be on their way)
    ready: list[int] = []
    m2.store.bus.on_wake(WAKE_TOPIC, lambda: woken.append("events"))
    m2.store.bus.on_wake("marker", lambda: woken.append("marker"))
    m2.store.bus.on_wake("ready", lambda: ready.append(1))

    async def sent(topic: str) -> None:
        await m1.router.central.write_sync(lambda conn, _blocking: pgbus.wake_sync(conn, m1.store.node, topic))

    async def listening() -> bool:  # node 2 LISTENs from a connection of its own, opened in the background
        await sent("ready")
        return bool(ready)
    await wait_for(listening, what="node 2 listening")
    src, _, _ = await Sources(m1.router.central).add("oa")
    store = EventStore(m1.router.central, node=m1.store.node)
    asked: list[int] = []
    try:
        store.wake_others = lambda n: asked.append(n) or True
        await store.accept([new(src.id, "loud", a.id, queue_id="Q1"), new(src.id, "loud2", a.id, queue_id="Q2")])
        await wait_for(lambda: woken == ["events"], what="the accept's NOTIFY at the other node")
        store.wake_others = lambda n: asked.append(n) or False
        await store.accept([new(src.id, "quiet", a.id, queue_id="Q3")])
        await sent("marker")
        # One node's notifications arrive in commit order: had the quiet accept sent one, it came before this.
        await wait_for(lambda: "marker" in woken, what="the marker at the other node")
        assert woken == ["events", "marker"] and asked == [2, 1]
    finally:
        await store.close()
