"""Delivered and failed webhook callbacks for workflow events, end to end to a real HTTP receiver on loopback: one per outcome, also across a crash."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from bridges import callbacks
from bridges.outbox import Outbox
from bridges.webhooks import Sender
from bridges.worker import RETRY_DELAYS
from mailboxes.events import EVENT_LEASE, FAILED, SENT
from mailboxes.webhookendpoints import WebhookEndpoints, new_secret
from tests.protocol.smtp.support import FakeClock
from tests.support.webhook_receiver import Receiver

from .test_event_worker import _post, _setup, _subjects


def _sender(inst, clock) -> Sender:
    return Sender(Outbox(inst.mb.router.central, node="n1", clock=clock), clock=clock, timeout=5.0, rand=lambda: 0.5)


async def _send_all(sender: Sender) -> int:
    try:
        return await sender.run_once()
    finally:
        await sender.close()


def _data(receiver: Receiver) -> list[tuple[str, dict]]:
    """(callback kind, data) of every request, each one's signature checked."""
    assert all(s.verified for s in receiver.requests)
    docs = [json.loads(s.body) for s in receiver.requests]
    return [(d["type"], d["data"]) for d in docs]


async def _start(tmp_path, storage_url):
    clock = FakeClock(datetime(2026, 12, 4, 10, 20, tzinfo=timezone.utc))
    inst, parts, src = await _setup(tmp_path, storage_url, clock)
    receiver = await Receiver(new_secret()).start()
    await WebhookEndpoints(inst.mb.router.central).set("oa", receiver.url, secret=receiver.secret)
    return clock, inst, parts, src, receiver


async def test_delivered_and_failed_are_posted_once_each(tmp_path, storage_url):
    clock, inst, parts, src, receiver = await _start(tmp_path, storage_url)
    override = inst.ctx.config.data_dir / "templates" / "events"
    override.mkdir(parents=True)  # a meeting template that cannot render: retried, then failed
    (override / "meeting_invitation.zh.txt").write_text("{{ broken(", encoding="utf-8")
    try:
        await _post(parts, src, id="ok1", title="Fine")
        assert await parts.worker.run_once() == 1
        assert await _send_all(_sender(inst, clock)) == 1
        [(kind, cb)] = _data(receiver)
        assert kind == "delivered" and cb["outcome"] == "delivered" and (cb["id"], cb["type"]) == ("ok1", "reminder")
        assert cb["recipients"] == ["alice@city.test", "bob@city.test"] and cb["recipients_total"] == 2
        assert cb["error"] is None and cb["unknown"] == []
        assert await parts.worker.run_once() == 0 and await _send_all(_sender(inst, clock)) == 0

        await _post(parts, src, id="bad1", type="meeting_invitation", title="Broken")
        assert await parts.worker.run_once() == 1
        assert await _send_all(_sender(inst, clock)) == 0  # pending again is no outcome
        for delay in RETRY_DELAYS:
            clock.now += delay
            assert await parts.worker.run_once() == 1
        assert (await parts.store.find(src.id, "bad1")).state == FAILED
        assert await _send_all(_sender(inst, clock)) == 1
        kind, failed = _data(receiver)[1]
        assert kind == "failed" and failed["id"] == "bad1" and "TemplateSyntaxError" in failed["error"]
        assert len(receiver.acked) == 2 and set(receiver.acked.values()) == {1}
    finally:
        await receiver.stop()
        await parts.worker.close()
        await inst.stop()


async def test_a_crash_between_outcome_and_callback_posts_it_once(tmp_path, storage_url):
    clock, inst, parts, src, receiver = await _start(tmp_path, storage_url)
    try:
        # 1. a node claims the event, writes the mail and dies before it settles (no outcome yet)
        row = await _post(parts, src, id="e1", recipients=["alice@city.test"], title="Once")
        [first] = await parts.store.claim(10)
        assert await parts.worker._deliver(first) == (SENT, None)
        assert await _send_all(_sender(inst, clock)) == 0
        # 2. its lease lapses: another round finishes it (no second copy), and the outcome and its
        #    callback commit together; that node dies before its sender posts anything
        clock.now += EVENT_LEASE + timedelta(seconds=1)
        assert await parts.worker.run_once() == 1
        assert _subjects(await inst.inbox("alice@city.test")) == ["Once"]
        # 3. the first node's late settle of its lapsed claim changes nothing and records nothing
        assert await parts.store.settle(first.id, SENT, claimed=first) is False
        [pending] = await Outbox(inst.mb.router.central, node="x").callbacks(source="oa")
        assert pending.kind == "delivered" and pending.state == "pending"
        # 4. after the restart a fresh sender finds the durable row and posts it
        assert await _send_all(_sender(inst, clock)) == 1
        assert await _send_all(_sender(inst, clock)) == 0
        [(kind, cb)] = _data(receiver)
        assert kind == "delivered" and cb["id"] == "e1" and receiver.acked == {pending.delivery_id: 1}
        assert (await parts.store.get(row.id)).state == SENT
    finally:
        await receiver.stop()
        await parts.worker.close()
        await inst.stop()


async def test_a_source_without_an_endpoint_gets_nothing_and_large_events_stay_under_the_limit(tmp_path, storage_url):
    clock = FakeClock(datetime(2026, 12, 4, 10, 20, tzinfo=timezone.utc))
    inst, parts, src = await _setup(tmp_path, storage_url, clock)
    try:
        await _post(parts, src, id="n1", title="No hook")
        assert await parts.worker.run_once() == 1
        assert await Outbox(inst.mb.router.central, node="x").callbacks() == []
        ev = await parts.store.find(src.id, "n1")
        many = ev.__class__(**{**ev.__dict__, "recipients": tuple((i, f"p{i}@city.test") for i in range(5000))})
        data = callbacks.payload(many, SENT, None)
        assert len(data["recipients"]) == callbacks.MAX_LISTED and data["recipients_total"] == 5000
    finally:
        await parts.worker.close()
        await inst.stop()
