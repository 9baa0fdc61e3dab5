"""Webhooks out (issue 11 point 5): the durable outbox and its sender against a real receiver on loopback.

The receiver (tests/support/webhook_receiver.py) checks every signature with the Standard
Webhooks reference library. Time is a clock the tests move; the sender's rounds are run by
hand (`run_once`), so nothing waits on a sleep.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from bridges import outbox as ob
from bridges.outbox import DEAD, DELIVERED, PENDING, SENDING, Outbox, enqueue, enqueue_sync
from bridges.webhooks import Backoff, Sender, next_attempt, signature
from mailboxes import schema as t
from mailboxes.errors import InvalidInput, NotFound
from mailboxes.webhookendpoints import WebhookEndpoints, check_url, new_secret
from tests.protocol.smtp.support import wait_for
from tests.support.webhook_receiver import Receiver

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move(self, **kw) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
async def receiver():
    r = await Receiver(new_secret()).start()
    yield r
    await r.stop()


def sender_for(db, clock, *, node="n1", timeout=5.0, lease=30, **kw) -> Sender:
    out = Outbox(db, node=node, clock=clock, lease=timedelta(seconds=lease))
    return Sender(out, clock=clock, timeout=timeout, rand=lambda: 0.5, **kw)


async def one_round(sender: Sender) -> Sender:
    try:
        await sender.run_once()
    finally:
        await sender.close()
    return sender


async def set_endpoint(db, source: str, r: Receiver, url: str | None = None) -> None:
    await WebhookEndpoints(db).set(source, url or r.url, secret=r.secret)


async def test_signed_callback_verifies_with_the_reference_library(mb, receiver):
    """Real time here, so the library's replay window is checked too."""
    db = mb.router.central
    receiver.verify_window = True
    await set_endpoint(db, "oa", receiver)
    did = await enqueue(db, "oa", "delivered", {"event": "ev-1", "to": "王芳 <wangfang@city.test>"})
    sender = sender_for(db, ob.utcnow)
    try:
        assert await sender.run_once() == 1
    finally:
        await sender.close()
    [seen] = receiver.requests
    assert seen.verified and receiver.acked == {did: 1}
    assert seen.headers["content-type"] == "application/json" and seen.headers["webhook-id"] == did
    doc = json.loads(seen.body)
    assert doc["type"] == "delivered" and doc["data"] == {"event": "ev-1", "to": "王芳 <wangfang@city.test>"}
    assert doc["timestamp"].endswith("Z")
    # Our signature is the library's, and it covers the id, the timestamp and every byte of the body.
    stamp = int(seen.headers["webhook-timestamp"])
    assert signature(receiver.secret, did, stamp, seen.body) == seen.headers["webhook-signature"]
    assert not receiver.verified(seen.headers, seen.body.replace(b"ev-1", b"ev-2"))
    assert not receiver.verified({**seen.headers, "webhook-id": "msg_other"}, seen.body)
    assert not receiver.verified({**seen.headers, "webhook-timestamp": str(stamp + 1)}, seen.body)
    cb = await sender.outbox.callback(did)
    assert (cb.state, cb.attempts, cb.last_status, cb.last_error) == (DELIVERED, 1, 204, None)


async def test_refused_then_retried_with_backoff_and_acknowledged_once(mb, receiver):
    db = mb.router.central
    clock = Clock()
    await set_endpoint(db, "oa", receiver)
    receiver.fail_first = 3
    did = await enqueue(db, "oa", "failed", {"event": "ev-9"}, clock=clock)
    sender = sender_for(db, clock, backoff=Backoff(base=timedelta(seconds=10)))
    try:
        for n, step in enumerate((10, 20, 40), start=1):
            assert await sender.run_once() == 1
            cb = await sender.outbox.callback(did)
            assert (cb.state, cb.attempts, cb.last_status) == (PENDING, n, 503)
            assert cb.last_error == "HTTP 503 Busy Now"
            # rand() = 0.5: three quarters of the step (equal jitter: the upper half of it)
            assert cb.next_attempt_at == clock.now + timedelta(seconds=step * 0.75)
            assert await sender.run_once() == 0  # not due yet: nothing is sent early
            clock.now = cb.next_attempt_at
        assert await sender.run_once() == 1
        clock.move(days=30)
        assert await sender.run_once() == 0
    finally:
        await sender.close()
    assert receiver.acked == {did: 1} and len(receiver.requests) == 4
    assert all(s.verified and s.headers["webhook-id"] == did for s in receiver.requests)
    stamps = [int(s.headers["webhook-timestamp"]) for s in receiver.requests]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4  # each attempt signed at its own time
    assert len({s.body for s in receiver.requests}) == 1  # the same body every time
    cb = await sender.outbox.callback(did)
    assert (cb.state, cb.attempts, cb.settled_at) == (DELIVERED, 4, clock.now - timedelta(days=30))


@pytest.mark.slow
async def test_a_hanging_receiver_times_out_and_a_closed_port_is_retried(mb, receiver):
    db = mb.router.central
    clock = Clock()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens here once the socket is closed
    await set_endpoint(db, "hangs", receiver)
    await WebhookEndpoints(db).set("down", f"http://127.0.0.1:{closed}/hook", secret=receiver.secret)
    receiver.hang = True
    hung = await enqueue(db, "hangs", "delivered", {"n": 1}, clock=clock)
    down = await enqueue(db, "down", "delivered", {"n": 2}, clock=clock)
    sender = sender_for(db, clock, timeout=0.5)
    try:
        assert await sender.run_once() == 2
        a, b = await sender.outbox.callback(hung), await sender.outbox.callback(down)
        assert (a.state, a.last_error) == (PENDING, "no answer within 0.5 s")
        assert b.state == PENDING and b.last_error.startswith("ClientConnectorError") and b.last_status is None
        receiver.hang = False
        receiver.release.set()
        await WebhookEndpoints(db).set("down", receiver.url)  # the system is reachable again (secret kept)
        clock.move(minutes=1)
        assert await sender.run_once() == 2
    finally:
        await sender.close()
    assert receiver.acked == {hung: 1, down: 1}
    assert [s.headers["webhook-id"] for s in receiver.requests].count(hung) == 2


async def test_redirects_are_not_followed(mb, receiver):
    db = mb.router.central
    clock = Clock()
    await set_endpoint(db, "oa", receiver)
    receiver.status = 307
    did = await enqueue(db, "oa", "signed", {"n": 1}, clock=clock)
    sender = await one_round(sender_for(db, clock))
    cb = await sender.outbox.callback(did)
    assert (cb.state, cb.last_status, cb.last_error) == (PENDING, 307, "HTTP 307 Temporary Redirect")
    assert len(receiver.requests) == 1


async def test_dead_after_max_age_and_logged_without_the_secret(mb, receiver, caplog):
    db = mb.router.central
    clock = Clock()
    await set_endpoint(db, "oa", receiver)
    receiver.status = 500
    did = await enqueue(db, "oa", "registered", {"n": 1}, clock=clock)
    sender = sender_for(db, clock, backoff=Backoff(base=timedelta(seconds=10), max_age=timedelta(seconds=60)))
    caplog.set_level(logging.INFO, logger="postroom.webhooks")
    try:
        for _ in range(10):
            if not await sender.run_once():
                break
            cb = await sender.outbox.callback(did)
            if cb.state == DEAD:
                break
            assert cb.next_attempt_at <= T0 + timedelta(seconds=60)  # the last try lands on the max age
            clock.now = cb.next_attempt_at
        cb = await sender.outbox.callback(did)
        assert cb.state == DEAD and cb.last_error == "HTTP 500 Internal Server Error"
        n = len(receiver.requests)
        clock.move(days=1)
        assert await sender.run_once() == 0 and len(receiver.requests) == n
    finally:
        await sender.close()
    assert [s.headers["webhook-timestamp"] for s in receiver.requests][-1] == str(int((T0 + timedelta(seconds=60))
                                                                                      .timestamp()))
    assert any(f"webhook delivery={did}" in r.message and "dead after" in r.message for r in caplog.records)
    assert receiver.secret not in caplog.text and "receiver-side-token" not in caplog.text
    assert receiver.secret.removeprefix("whsec_") not in caplog.text


async def test_enqueue_commits_and_rolls_back_with_the_callers_transaction(mb, receiver):
    db = mb.router.central
    await set_endpoint(db, "oa", receiver)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.write() as conn:
            assert await enqueue(conn, "oa", "registered", {"doc": "深地税发〔2012〕12号"})
            raise Boom
    async with db.write() as conn:
        kept = await enqueue(conn, "oa", "registered", {"doc": "深地税发〔2012〕12号"})
    synced = await db.write_sync(lambda conn, _blocking: enqueue_sync(conn, "oa", "signed", {"by": "李娜"}))
    async with db.read() as conn:
        rows = (await conn.execute(select(t.webhook_outbox.c.delivery_id, t.webhook_outbox.c.state)
                                   .order_by(t.webhook_outbox.c.id))).all()
    assert [tuple(r) for r in rows] == [(kept, PENDING), (synced, PENDING)]
    assert await enqueue(db, "no-such-source", "delivered", {}) is None  # nowhere to send: nothing recorded
    with pytest.raises(InvalidInput, match="kind"):
        await enqueue(db, "oa", "Delivered!", {})
    with pytest.raises(InvalidInput, match="plain JSON"):
        await enqueue(db, "oa", "delivered", {"when": datetime.now()})
    with pytest.raises(InvalidInput, match="at most 65536 bytes"):
        await enqueue(db, "oa", "delivered", {"x": "a" * ob.MAX_BODY_BYTES})
    with pytest.raises(InvalidInput, match="source name"):
        await enqueue(db, "oa system", "delivered", {})


async def test_a_dead_nodes_claim_is_sent_again_after_its_lease_and_its_late_settle_is_ignored(mb, receiver):
    db = mb.router.central
    clock = Clock()
    await set_endpoint(db, "oa", receiver)
    did = await enqueue(db, "oa", "delivered", {"n": 1}, clock=clock)
    dead_node = Outbox(db, node="dead", clock=clock, lease=timedelta(seconds=30))
    [row] = await dead_node.claim(10)
    sender = sender_for(db, clock, node="live", lease=30)
    try:
        assert await sender.run_once() == 0  # still leased to the other node
        assert (await sender.outbox.callback(did)).state == SENDING
        assert await sender.outbox.next_due() == T0 + timedelta(seconds=30)
        clock.move(seconds=31)
        assert await sender.run_once() == 1
    finally:
        await sender.close()
    assert receiver.acked == {did: 1}
    assert not await dead_node.settle(ob.Settle(row.id, PENDING, 1, clock.now))  # changes nothing
    assert (await sender.outbox.callback(did)).state == DELIVERED


async def test_a_removed_endpoint_makes_its_callbacks_dead(mb, receiver):
    db = mb.router.central
    clock = Clock()
    await set_endpoint(db, "oa", receiver)
    did = await enqueue(db, "oa", "delivered", {"n": 1}, clock=clock)
    await WebhookEndpoints(db).remove("oa")
    sender = await one_round(sender_for(db, clock))
    cb = await sender.outbox.callback(did)
    assert (cb.state, cb.attempts, cb.last_error) == (DEAD, 0, "no webhook endpoint for this source any more")
    assert receiver.requests == []
    with pytest.raises(NotFound):
        await WebhookEndpoints(db).remove("oa")


async def test_endpoint_policy_and_secrets(mb):
    eps = WebhookEndpoints(mb.router.central)
    ep, generated = await eps.set("oa", "https://oa.city.test/hooks/postroom")
    assert generated and ep.secret.startswith("whsec_") and ep.secret not in repr(ep)
    again, generated = await eps.set("oa", "https://oa2.city.test/h")
    assert not generated and again.secret == ep.secret and again.url == "https://oa2.city.test/h"
    rotated, generated = await eps.set("oa", "https://oa2.city.test/h", new_secret_too=True)
    assert generated and rotated.secret != ep.secret
    for bad, why in (("ftp://oa.city.test/", "http or https"), ("http://oa.city.test/h", "plain http"),
                     ("https://user:pw@oa.city.test/", "user name"), ("https:///nohost", "host"),
                     ("https://oa.city.test/a b", "spaces"), ("https://oa.city.test:99999/", "valid URL"),
                     ("https://" + "a" * 2100, "characters")):
        with pytest.raises(InvalidInput, match=why):
            check_url(bad)
    for ok in ("http://127.0.0.1:8080/h", "http://[::1]/h", "http://localhost/h", "https://oa.city.test/h"):
        assert check_url(ok) == ok
    assert check_url("http://oa.city.test/h", allow_plain_http=True)
    with pytest.raises(InvalidInput, match="whsec_"):
        await eps.set("oa", "https://oa.city.test/", secret="hunter2")
    with pytest.raises(InvalidInput, match="24 to 64 bytes"):
        await eps.set("oa", "https://oa.city.test/", secret="whsec_c2hvcnQ=")
    assert [e.source for e in await eps.list()] == ["oa"]


async def test_two_senders_on_one_database_never_send_one_callback_twice(two_stores, receiver):
    """Two nodes (two stores, two senders) drain one outbox: on PostgreSQL FOR UPDATE SKIP LOCKED."""
    m1, m2, _ = two_stores
    await set_endpoint(m1.router.central, "oa", receiver)
    ids = [await enqueue(m1.router.central, "oa", "delivered", {"n": i}) for i in range(60)]
    a = sender_for(m1.router.central, ob.utcnow, node="a", concurrency=4)
    b = sender_for(m2.router.central, ob.utcnow, node="b", concurrency=4)

    async def drain(s: Sender) -> int:
        n = 0
        while sent := await s.run_once():
            n += sent
        return n

    try:
        counts = await asyncio.gather(drain(a), drain(b), drain(a), drain(b))
    finally:
        await a.close()
        await b.close()
    assert sum(counts) == 60 and len(receiver.requests) == 60
    assert receiver.acked == {i: 1 for i in ids}
    assert a.attempts and b.attempts  # both nodes took part


def test_next_attempt_doubles_with_jitter_caps_and_stops_at_max_age():
    p = Backoff(base=timedelta(seconds=10), max_delay=timedelta(seconds=100), max_age=timedelta(hours=1))
    for n, step in ((1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (60, 100)):
        low, high = (next_attempt(T0, n, T0, p, r) - T0 for r in (0.0, 0.999999))
        assert timedelta(seconds=step / 2) == low and high <= timedelta(seconds=step)
    assert next_attempt(T0, 3, T0 + timedelta(minutes=59, seconds=50), p, 0.5) == T0 + timedelta(hours=1)
    assert next_attempt(T0, 3, T0 + timedelta(hours=1), p, 0.5) is None


async def test_the_running_sender_keeps_at_most_concurrency_requests_in_flight(mb, receiver):
    """`start()`'s loop (as `postroom serve` runs it): 3 slots, 10 callbacks, a receiver that holds requests."""
    db = mb.router.central
    await set_endpoint(db, "oa", receiver)
    receiver.hang = True
    ids = [await enqueue(db, "oa", "delivered", {"n": i}) for i in range(10)]
    sender = sender_for(db, ob.utcnow, concurrency=3)
    await sender.start()
    try:
        sender.poke()
        await wait_for(lambda: len(receiver.requests) == 3, timeout=30, what="three requests in flight")
        held = await sender.outbox.callbacks(state=SENDING)
        assert len(held) == 3 and len(receiver.requests) == 3  # the other seven are not claimed meanwhile
        receiver.hang = False
        receiver.release.set()
        await wait_for(lambda: len(receiver.acked) == 10, timeout=30, what="every callback acknowledged")
    finally:
        await sender.close()
    assert receiver.acked == {i: 1 for i in ids}


async def test_an_administrators_retry_and_pruning_of_settled_callbacks(mb, receiver):
    db = mb.router.central
    clock = Clock()
    await set_endpoint(db, "oa", receiver)
    receiver.status = 500
    did = await enqueue(db, "oa", "failed", {"n": 1}, clock=clock)
    sender = sender_for(db, clock, backoff=Backoff(max_age=timedelta(seconds=1)))
    try:
        clock.move(seconds=2)
        await sender.run_once()
        assert (await sender.outbox.callback(did)).state == DEAD
        receiver.status = 200
        await sender.outbox.retry(did)  # due now, with a fresh max age
        assert await sender.run_once() == 1
        assert (await sender.outbox.callback(did)).state == DELIVERED
        with pytest.raises(NotFound):
            await sender.outbox.retry(did)  # delivered: nothing to retry
        waiting = await enqueue(db, "oa", "failed", {"n": 2}, clock=clock)
        clock.move(days=6)
        assert await sender.outbox.prune(timedelta(days=7)) == 0
        clock.move(days=2)
        assert await sender.outbox.prune(timedelta(days=7)) == 1
    finally:
        await sender.close()
    assert [c.delivery_id for c in await sender.outbox.callbacks()] == [waiting]
    assert receiver.acked == {did: 1}
