"""The admin operations layer on SQLite and PostgreSQL: queue pages and filters, per-route figures, actions with audit, DKIM, volume, storage."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from delivery.links import Links
from delivery.priority import FLASH
from delivery.queue import NewEntry, Queue, Settle
from mailboxes import schema as t
from mailboxes.errors import NotFound
from mailboxes.ingest import prepare
from webmail.adminqueue import Operations

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
MSG = b"Subject: x\r\n\r\nbody\r\n"


def _clock():
    return NOW


async def _fill(mb, n: int) -> Queue:
    q = Queue(mb.router.central, node="test", clock=_clock)
    for i in range(n):
        await q.enqueue(NewEntry(f"Q{i:03d}", "a@city.test", (f"x{i}@far{i % 3}.test",), MSG))
    return q


async def test_pages_filters_and_route_figures(mb):
    q = await _fill(mb, 7)
    try:
        async with mb.router.central.write() as conn:
            await conn.execute(t.routes.insert().values(domain="far1.test", host="127.0.0.1", port=1, tls="none",
                                                        created_at=NOW))
        ops = Operations(mb, queue=q, clock=_clock)
        first = await ops.view.page(limit=3)
        assert [i.queue_id for i in first.items] == ["Q000", "Q001", "Q002"] and first.total == 7
        second = await ops.view.page(limit=3, after=first.next_cursor)
        assert [i.queue_id for i in second.items] == ["Q003", "Q004", "Q005"]
        last = await ops.view.page(limit=3, after=second.next_cursor)
        assert [i.queue_id for i in last.items] == ["Q006"] and last.next_cursor is None
        routed = await ops.view.page(route="far1.test")
        assert [i.queue_id for i in routed.items] == ["Q001", "Q004"] and routed.total == 2
        default = await ops.view.page(route="*")
        assert default.total == 5
        # One attempt failed for Q002: it is deferred, with its error.
        [c] = [c for c in await q.claim(10) if c.queue_id == "Q002"]  # the others stay "delivering"
        await q.settle([Settle(c.recipient_id, "queued", 1, NOW + timedelta(hours=1), "451 4.4.1 no answer")])
        deferred = await ops.view.page(state="deferred")
        assert [i.queue_id for i in deferred.items] == ["Q002"]
        assert deferred.items[0].last_error == "451 4.4.1 no answer" and deferred.items[0].deferred
        figures = {f.route: f for f in await ops.view.route_figures()}
        assert figures["far1.test"].messages == 2 and figures["far1.test"].via == "127.0.0.1:1"
        assert figures["*"].messages == 5 and figures["*"].via == "MX" and figures["*"].oldest == NOW
        assert (figures["far1.test"].state, figures["far1.test"].urgent) == ("up", 0)
        # far1.test's link and one MX host go down; an urgent message waits for far1.test.
        links = Links(mb.router.central, node="test", clock=_clock)
        await links.mark_down("127.0.0.1:1", "refused")
        await links.mark_down("mx.far2.test:25", "timed out")
        await q.enqueue(NewEntry("URGENT", "a@city.test", ("x@far1.test",), MSG, priority=FLASH))
        figures = {f.route: f for f in await ops.view.route_figures()}
        far1 = figures["far1.test"]
        assert (far1.state, far1.urgent, far1.last_error, far1.down_since) == ("down", 1, "refused", NOW)
        assert far1.next_probe_at == NOW + timedelta(seconds=5)
        assert (figures["*"].state, figures["*"].last_error) == ("down", "timed out")  # one of its MX hosts
        await links.mark_up("127.0.0.1:1")
        assert {f.route: f.state for f in await ops.view.route_figures()}["far1.test"] == "up"
        health = await ops.view.health()
        assert health.messages == 8 and health.deferred == 1 and health.oldest == NOW
        assert [i.queue_id for i in health.deferred_items] == ["Q002"]
        assert sum(health.by_state.values()) == 8
    finally:
        await q.close()


async def test_actions_are_audited_and_unknown_ids_are_not_found(mb):
    q = await _fill(mb, 2)
    try:
        admin = await mb.add_account("root@city.test", password="pw")
        ops = Operations(mb, queue=q, clock=_clock)
        assert await ops.queue_action(admin, "api", "hold", "Q000") == 1
        assert (await ops.view.page(state="held")).total == 1
        assert await ops.queue_action(admin, "api", "release", "Q000") == 1
        assert await ops.queue_action(admin, "web", "retry", "Q001") == 1
        assert await ops.queue_action(admin, "web", "delete", "Q001") == 1
        assert [i.queue_id for i in (await ops.view.page()).items] == ["Q000"]
        for action in ("retry", "hold", "release", "delete"):
            with pytest.raises(NotFound):
                await ops.queue_action(admin, "api", action, "NOPE")
        entries = await mb.directory.audit_entries(10)
        assert [(e["action"], e["target"]) for e in reversed(entries)] == [
            ("queue.hold", "Q000"), ("queue.release", "Q000"), ("queue.retry", "Q001"), ("queue.delete", "Q001")]
        assert all(e["actor"] == "root@city.test" for e in entries)
    finally:
        await q.close()


async def test_dkim_generate_and_records(mb):
    admin = await mb.add_account("root@city.test", password="pw")
    ops = Operations(mb, clock=_clock)
    [d] = await ops.dkim_domains()
    assert (d.domain, d.selector, d.txt) == ("city.test", None, None)
    made = await ops.dkim_generate(admin, "api", "city.test", "s2026")
    assert made.selector == "s2026" and made.record_name == "s2026._domainkey.city.test"
    assert made.txt.startswith("v=DKIM1; k=rsa; p=") and made.zone_line.startswith("s2026._domainkey.city.test. IN TXT")
    assert (await ops.keys.signing_key("city.test")).selector == "s2026"
    with pytest.raises(NotFound):
        await ops.dkim_generate(admin, "api", "elsewhere.test")
    assert (await mb.directory.audit_entries(1))[0]["action"] == "dkim.generate"


async def test_volume_per_day_and_storage_per_department(mb):
    await mb.directory.add_department("fin", "财务处")
    a = await mb.add_account("a@city.test", password="pw", department="fin", quota_bytes=1000)
    b = await mb.add_account("b@city.test", password="pw")
    raw = b"From: x@far.test\r\nSubject: hi\r\n\r\nhello\r\n"
    await mb.store.append(a, "INBOX", prepare(raw), internal_date=NOW - timedelta(hours=1))
    await mb.store.append(a, "INBOX", prepare(raw), internal_date=NOW - timedelta(days=1))
    await mb.store.append(b, "INBOX", prepare(raw), internal_date=NOW - timedelta(days=1))
    await mb.store.append(a, "Sent", prepare(raw), internal_date=NOW - timedelta(days=1))
    await mb.store.append(a, "Drafts", prepare(raw), internal_date=NOW - timedelta(days=1))
    await mb.store.append(a, "INBOX", prepare(raw), internal_date=NOW - timedelta(days=30))  # too old
    ops = Operations(mb, clock=_clock)
    days = await ops.volume()
    assert len(days) == 14 and days[-1].day == "2026-11-20" and days[0].day == "2026-11-07"
    assert (days[-1].delivered, days[-1].sent) == (1, 0)
    assert (days[-2].delivered, days[-2].sent) == (2, 1)
    assert sum(d.delivered + d.sent for d in days[:-2]) == 0
    by_code = {d.code: d for d in await ops.storage()}
    assert by_code["fin"].name == "财务处" and by_code["fin"].accounts == 1 and by_code["fin"].quota_bytes == 1000
    assert by_code["fin"].messages == 5 and by_code["fin"].bytes == 5 * len(raw)
    assert by_code[""].messages == 1 and by_code[""].accounts == 1
    async with mb.router.central.write() as conn:  # usage is read, not recounted
        await conn.execute(update(t.mailbox_usage).where(t.mailbox_usage.c.account_id == b.id).values(bytes=7))
    assert {d.code: d.bytes for d in await ops.storage()}[""] == 7


async def test_volume_and_storage_over_a_department_database(storage_url):
    """Department mode: mail in dept-finance and main both counted; usage mapped to departments across databases."""
    from mailboxes.partitions import StorageConfig
    from mailboxes.service import open_mailboxes
    from tests.conftest import FAST_HASHER

    mb = await open_mailboxes(StorageConfig(url=storage_url, mode="department", departments=("finance",)),
                              hasher=FAST_HASHER)
    try:
        await mb.directory.add_domain("city.test")
        await mb.directory.add_department("finance", "财务处")
        await mb.directory.add_department("office", "办公室")
        fin = await mb.add_account("cai@city.test", password="pw", department="finance")
        off = await mb.add_account("ban@city.test", password="pw", department="office")
        assert mb.store.home(fin) == "dept-finance"
        raw = b"Subject: x\r\n\r\nbody\r\n"
        for acct, n in ((fin, 3), (off, 1)):
            for _ in range(n):
                await mb.store.append(acct, "INBOX", prepare(raw), internal_date=NOW)
        ops = Operations(mb, clock=_clock)
        assert (await ops.volume())[-1].delivered == 4
        by_code = {d.code: d for d in await ops.storage()}
        assert (by_code["finance"].messages, by_code["finance"].bytes) == (3, 3 * len(raw))
        assert (by_code["office"].messages, by_code["office"].name) == (1, "办公室")
    finally:
        await mb.close()


async def test_every_action_logs_one_admin_line(mb, caplog):
    q = await _fill(mb, 1)
    try:
        admin = await mb.add_account("root@city.test", password="pw")
        ops = Operations(mb, queue=q, clock=_clock)
        with caplog.at_level("INFO", logger="postroom.admin"):
            await ops.queue_action(admin, "api", "hold", "Q000")
            await ops.dkim_generate(admin, "web", "city.test", "s1")
        lines = [r.getMessage() for r in caplog.records if r.name == "postroom.admin"]
        assert lines[0] == "queue.hold by root@city.test via api: Q000 recipients=1"
        assert lines[1].startswith("dkim.generate by root@city.test via web: city.test selector=s1")
        assert len(lines) == 2 and "PRIVATE" not in "".join(lines)
    finally:
        await q.close()
