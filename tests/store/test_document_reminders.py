"""Urgent-document reminders (issue 12 point 3): one mail to the sender per overdue document, never repeated, one claim across two nodes; a clock the test moves, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import email
from datetime import datetime, timedelta, timezone
from email import policy

from bridges.reminders import Reminders
from delivery.envelope import Reply
from delivery.submit import Outcome
from mailboxes.documents import Documents

T0 = datetime(2026, 12, 4, 1, 0, tzinfo=timezone.utc)
AFTER = {"特急": timedelta(hours=2), "加急": timedelta(hours=24)}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Outbox:
    """submit() stand-in: keeps what it is given, accepts everything."""

    def __init__(self) -> None:
        self.sent = []

    async def __call__(self, sub) -> Outcome:
        self.sent.append(sub)
        return Outcome("q1", Reply(250, "2.0.0", "queued"), queued=1)


async def _dispatch(docs: Documents, number: str, urgency: str, orgs=("futian", "luohu")) -> int:
    return await docs.record_dispatch(issuing_organ="市局", year=2026, number=number, title="关于防汛的紧急通知",
                                      urgency=urgency, manifest="{}", sender="fawen@city.test",
                                      recipients={o: (f"<{number}{o}@c>", f"q{number}{o}") for o in orgs})


async def test_an_unsigned_urgent_document_raises_one_reminder_on_one_of_two_nodes(two_stores):
    m1, m2, _ = two_stores
    clock, out, reported = Clock(), Outbox(), []

    async def report(conn, kind, payload):
        if kind == "document.overdue":
            reported.append((kind, payload["number"], payload["org"], payload["urgency"]))
    nodes = [Reminders(Documents(m.router.central, clock=clock, report=report), out, after=AFTER,
                       hostname="mail.city.test") for m in (m1, m2)]
    docs = nodes[0].documents
    await _dispatch(docs, "市发〔2026〕1号", "特急")
    await _dispatch(docs, "市发〔2026〕2号", "加急")
    await _dispatch(docs, "市发〔2026〕3号", "")  # routine: never reminded
    await docs.track("市发〔2026〕1号", "futian", "signed", signed_by="王登记")
    clock.now += timedelta(hours=1, minutes=59)
    assert [await n.run_once() for n in nodes] == [0, 0] and out.sent == []
    clock.now += timedelta(minutes=1)  # 2 h: luohu has not signed for the 特急 one
    counts = await asyncio.gather(*(n.run_once() for n in nodes), *(n.run_once() for n in nodes))
    assert sum(counts) == 1
    [sub] = out.sent
    assert sub.recipients == ("fawen@city.test",)
    msg = email.message_from_bytes(sub.data, policy=policy.default)
    assert msg["Subject"].startswith("[特急] 催办提醒") and "市发〔2026〕1号" in msg["Subject"]
    body = msg.get_content()
    assert "luohu" in body and "futian" not in body and msg["Auto-Submitted"] == "auto-generated"
    assert reported == [("document.overdue", "市发〔2026〕1号", "luohu", "特急")]
    # a day later: the 加急 one, both organisations in one mail; the 特急 one is not repeated
    clock.now += timedelta(hours=22)
    assert sum([await n.run_once() for n in nodes]) == 2
    assert len(out.sent) == 2
    body = email.message_from_bytes(out.sent[1].data, policy=policy.default).get_content()
    assert "futian" in body and "luohu" in body and "市发〔2026〕2号" in body
    clock.now += timedelta(days=30)
    assert [await n.run_once() for n in nodes] == [0, 0] and len(out.sent) == 2
    assert len(reported) == 3


async def test_signed_in_time_or_reminders_off_means_no_mail(two_stores):
    m1, _, _ = two_stores
    clock, out = Clock(), Outbox()
    docs = Documents(m1.router.central, clock=clock)
    await _dispatch(docs, "市发〔2026〕4号", "特急", orgs=("futian",))
    off = Reminders(docs, out, after={"特急": timedelta(0), "加急": timedelta(0)}, hostname="h")
    clock.now += timedelta(hours=3)
    assert await off.run_once() == 0
    await docs.track("市发〔2026〕4号", "futian", "signed", signed_by="王")
    assert await Reminders(docs, out, after=AFTER, hostname="h").run_once() == 0 and out.sent == []
