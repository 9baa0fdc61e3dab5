"""The events worker with a clock the test moves: digests per person and period grouped by type, urgent at once, an interrupted delivery sent once."""

from __future__ import annotations

import email
from datetime import datetime, timedelta, timezone
from email import policy

from bridges import service as bridges_service
from bridges import validate
from bridges.recipients import Expander
from mailboxes.events import SENT
from tests.protocol.smtp.support import FakeClock, make_config, start_instance


async def _setup(tmp_path, storage_url, clock):
    inst = await start_instance(make_config(tmp_path, storage_url), clock=clock)
    inst.ctx.extras["clock"] = clock
    for u in ("alice", "bob"):
        await inst.add_user(f"{u}@city.test")
    parts = bridges_service.build(inst.ctx)  # its worker is not started: the test runs its rounds
    src, _, _ = await parts.sources.add("oa")
    return inst, parts, src


async def _post(parts, src, **fields):
    ev = {"id": fields.pop("id"), "type": "reminder", "recipients": ["alice@city.test", "bob@city.test"],
          "title": fields.get("title", fields.get("id", "")), "body": "b", **fields}
    new = await parts.api._prepare(validate.event(ev), src.id, Expander(parts.api.directory))
    [(row, _)] = await parts.store.accept([new])
    return row


def _subjects(raws: list[bytes]) -> list[str]:
    return [str(email.message_from_bytes(r, policy=policy.default)["Subject"]) for r in raws]


async def test_digests_per_person_and_period_grouped_by_type(tmp_path, storage_url):
    clock = FakeClock(datetime(2026, 12, 4, 10, 20, tzinfo=timezone.utc))
    inst, parts, src = await _setup(tmp_path, storage_url, clock)
    try:
        alice = await inst.mb.directory.account("alice@city.test")
        await parts.store.set_preferences(alice.id, {"reminder": "hourly", "document_arrived": "hourly",
                                                     "meeting_invitation": "daily"})
        await _post(parts, src, id="r1", title="Reminder one")
        await _post(parts, src, id="r2", title="Reminder two")
        await _post(parts, src, id="d1", type="document_arrived", title="Document one")
        await _post(parts, src, id="m1", type="meeting_invitation", title="Meeting one")
        await _post(parts, src, id="u1", title="Urgent one", urgency="urgent", locale="en")
        await _post(parts, src, id="a1", type="approval_request", title="Approve one")
        assert await parts.worker.run_once() == 6
        assert sorted(_subjects(await inst.inbox("bob@city.test"))) == sorted(
            ["Reminder one", "Reminder two", "Document one", "Meeting one", "[Urgent] Urgent one", "Approve one"])
        # alice: the urgent event and the type she keeps immediate, nothing else yet
        assert sorted(_subjects(await inst.inbox("alice@city.test"))) == ["Approve one", "[Urgent] Urgent one"]
        assert await parts.worker.run_once() == 0
        clock.now = datetime(2026, 12, 4, 10, 59, 59, tzinfo=timezone.utc)
        assert await parts.worker.run_once() == 0  # not due before the full hour
        clock.now = datetime(2026, 12, 4, 11, 0, 0, tzinfo=timezone.utc)
        assert await parts.worker.run_once() == 1  # one digest: one message for her this hour
        inbox = await inst.inbox("alice@city.test")
        assert len(inbox) == 3
        digest = email.message_from_bytes(inbox[-1], policy=policy.default)
        assert digest["Subject"] == "通知汇总：3 条" and digest["Auto-Submitted"] == "auto-generated"
        text = digest.get_body(("plain",)).get_content()
        assert text.index("== document_arrived（1）==") < text.index("Document one") < text.index("== reminder（2）==") \
            < text.index("Reminder one") < text.index("Reminder two")
        assert "Meeting one" not in text  # daily: tomorrow's digest
        assert await parts.worker.run_once() == 0
        clock.now = datetime(2026, 12, 5, 0, 0, 0, tzinfo=timezone.utc)
        assert await parts.worker.run_once() == 1
        daily = email.message_from_bytes((await inst.inbox("alice@city.test"))[-1], policy=policy.default)
        assert daily["Subject"] == "通知汇总：1 条" and "Meeting one" in daily.get_body(("plain",)).get_content()
        clock.now += timedelta(days=2)
        assert await parts.worker.run_once() == 0 and len(await inst.inbox("alice@city.test")) == 4
    finally:
        await parts.worker.close()
        await inst.stop()


async def test_an_interrupted_delivery_is_finished_without_a_second_copy(tmp_path, storage_url):
    clock = FakeClock(datetime(2026, 12, 4, 10, 20, tzinfo=timezone.utc))
    inst, parts, src = await _setup(tmp_path, storage_url, clock)
    try:
        await _post(parts, src, id="e1", recipients=["alice@city.test"], title="Once")
        await _post(parts, src, id="e2", recipients=["alice@city.test", "bob@city.test"], title="Twice")
        # a node claims both and dies after submit() wrote e1's copy (and before anything of e2)
        first, second = await parts.store.claim(10)
        assert await parts.worker._deliver(first) == (SENT, None)
        assert _subjects(await inst.inbox("alice@city.test")) == ["Once"]
        assert await parts.worker.run_once() == 0  # still leased to the dead node
        clock.advance(parts.store.lease.total_seconds() + 1)
        assert await parts.worker.run_once() == 2
        assert sorted(_subjects(await inst.inbox("alice@city.test"))) == ["Once", "Twice"]
        assert _subjects(await inst.inbox("bob@city.test")) == ["Twice"]
        assert await parts.store.counts() == {SENT: 2}
        # resend is a new sending: a second copy on purpose
        from delivery.queue import new_queue_id
        await parts.store.resend(first.id, new_queue_id())
        assert await parts.worker.run_once() == 1
        assert sorted(_subjects(await inst.inbox("alice@city.test"))) == ["Once", "Once", "Twice"]
    finally:
        await parts.worker.close()
        await inst.stop()


async def test_a_broken_template_override_is_retried_then_failed_not_looped(tmp_path, storage_url):
    from bridges.worker import RETRY_DELAYS
    from mailboxes.events import FAILED

    clock = FakeClock(datetime(2026, 12, 4, 10, 20, tzinfo=timezone.utc))
    inst, parts, src = await _setup(tmp_path, storage_url, clock)
    override = inst.ctx.config.data_dir / "templates" / "events"
    override.mkdir(parents=True)
    (override / "reminder.zh.txt").write_text("{{ broken(", encoding="utf-8")
    try:
        row = await _post(parts, src, id="e1", title="Broken")
        assert await parts.worker.run_once() == 1
        ev = await parts.store.get(row.id)
        assert ev.state == "pending" and "TemplateSyntaxError" in ev.last_error
        for delay in RETRY_DELAYS:
            clock.now += delay
            assert await parts.worker.run_once() == 1
        ev = await parts.store.get(row.id)
        assert ev.state == FAILED and await inst.inbox("alice@city.test") == []
        (override / "reminder.zh.txt").unlink()  # mended: an administrator resends it
        from delivery.queue import new_queue_id
        await parts.store.resend(row.id, new_queue_id())
        assert await parts.worker.run_once() == 1
        assert _subjects(await inst.inbox("alice@city.test")) == ["Broken"]
    finally:
        await parts.worker.close()
        await inst.stop()


async def test_rounds_look_for_due_digests_only_once_one_may_be_due(tmp_path, storage_url, monkeypatch):
    """Each event makes two rounds at low rates, and every round ran a read for due digests (a fixed cost that
    made ~21 ms of CPU an event at 50 events/s). A round now trusts the earliest digest time read before the
    last sleep, for DIGEST_RECHECK seconds at most (another node may have held items meanwhile)."""
    from bridges import worker as worker_mod
    clock = FakeClock(datetime(2026, 12, 4, 10, 20, tzinfo=timezone.utc))
    inst, parts, src = await _setup(tmp_path, storage_url, clock)
    ticks = [1000.0]
    monkeypatch.setattr(worker_mod, "monotonic", lambda: ticks[0])
    looks = []
    real = parts.store.due_digests

    async def counted(*args):
        looks.append(clock.now)
        return await real(*args)
    monkeypatch.setattr(parts.store, "due_digests", counted)
    w = parts.worker
    try:
        assert await w._next_due() is None  # what the loop reads before it sleeps: no digest waits
        await _post(parts, src, id="n1", title="Now one")
        assert await w.run_once() == 1 and await w.run_once() == 0
        assert looks == []
        alice = await inst.mb.directory.account("alice@city.test")
        await parts.store.set_preferences(alice.id, {"reminder": "hourly"})
        await _post(parts, src, id="h1", title="Held one")  # held for alice's 11:00 digest, sent to bob
        assert await w.run_once() == 1 and looks == []
        assert await w._next_due() == datetime(2026, 12, 4, 11, 0, tzinfo=timezone.utc)
        assert await w.run_once() == 0 and looks == []  # 10:20: not due
        clock.now = datetime(2026, 12, 4, 11, 0, 0, tzinfo=timezone.utc)
        assert await w.run_once() == 1 and len(looks) == 1  # due: looked for and sent
        assert _subjects(await inst.inbox("alice@city.test"))[-1] == "通知汇总：1 条"
        # Items held since this worker last read (by another node, or in rounds that never slept): found once
        # the reading is DIGEST_RECHECK old.
        assert await w._next_due() is None
        await _post(parts, src, id="h2", title="Held two")
        before = len(looks)
        assert await w.run_once() == 1 and len(looks) == before  # bob's copy; alice's held for 12:00
        clock.now = datetime(2026, 12, 4, 12, 0, 0, tzinfo=timezone.utc)
        assert await w.run_once() == 0 and len(looks) == before  # due, but not known to be yet
        ticks[0] += worker_mod.DIGEST_RECHECK
        assert await w.run_once() == 1 and len(looks) == before + 1
        assert _subjects(await inst.inbox("alice@city.test"))[-1] == "通知汇总：1 条"
    finally:
        await parts.worker.close()
        await inst.stop()


async def test_a_sleeping_worker_takes_a_trickle_alone_and_shares_a_batch(tmp_path, storage_url):
    """Two processes' buses (FanoutBus, as `serve --workers 2` gives them): an event posted while this process's
    worker sleeps wakes only it; a batch larger than a round's deliveries, or an event its worker cannot take
    now, wakes the sibling too."""
    import asyncio

    from bridges.worker import CONCURRENCY
    from mailboxes.events import WAKE_TOPIC
    from mailboxes.fanout import FanoutBus
    from tests.protocol.smtp.support import wait_for

    inst = await start_instance(make_config(tmp_path / "site", storage_url))
    buses = [FanoutBus(str(tmp_path), me, ["1", "2"]) for me in ("1", "2")]
    for b in buses:
        b.start()
    sibling_woken = asyncio.Event()
    buses[1].on_wake(WAKE_TOPIC, sibling_woken.set)
    own_bus, inst.mb.store.bus = inst.mb.store.bus, buses[0]
    try:
        await inst.add_user("alice@city.test")
        parts = bridges_service.build(inst.ctx)
        src, _, _ = await parts.sources.add("oa")
        await parts.worker.start()
        await wait_for(lambda: parts.worker.idle, what="the worker asleep")
        await _post(parts, src, id="t1", title="t1", recipients=["alice@city.test"])

        async def delivered() -> bool:
            return len(await inst.inbox("alice@city.test")) == 1
        await wait_for(delivered, what="the trickle's event delivered by this worker")
        # The delivery's folder event travels to the sibling after any wake-up sent before it (one sender's
        # datagrams keep their order): once it is there, a wake-up would have been too.
        await wait_for(lambda: buses[1].received >= 1, what="the folder event at the sibling")
        assert not sibling_woken.is_set()

        await wait_for(lambda: parts.worker.idle, what="the worker asleep again")
        many = [await parts.api._prepare(validate.event({"id": f"b{i}", "type": "reminder", "title": f"b{i}",
                                                         "recipients": ["alice@city.test"], "body": "b"}),
                                         src.id, Expander(parts.api.directory)) for i in range(CONCURRENCY + 1)]
        await parts.store.accept(many)
        async with asyncio.timeout(10):
            await sibling_woken.wait()  # a batch is shared

        await parts.worker.close()  # a worker that cannot take it now (here: stopped) asks for help
        sibling_woken.clear()
        await _post(parts, src, id="t2", title="t2", recipients=["alice@city.test"])
        async with asyncio.timeout(10):
            await sibling_woken.wait()
    finally:
        inst.mb.store.bus = own_bus
        for b in buses:
            b.close()
        await inst.stop()
