"""Document steps posted to the workflow system through the webhook outbox (issue 12 point 2), against a real receiver on loopback, on SQLite and PostgreSQL.

The district reports document.registered and document.signed; the city document.delivered,
document.registered and document.signed per recipient organisation. Each callback is recorded
in the step's own transaction, once per step however often a document or receipt repeats.
"""

from __future__ import annotations

import json

from sqlalchemy import func, select

from bridges.docservice import webhook_report
from mailboxes import schema as t
from mailboxes.documents import Documents
from tests.store.test_webhooks import Clock, one_round, receiver, sender_for, set_endpoint  # noqa: F401 (fixture)


def _seen(receiver) -> list[dict]:
    assert all(r.verified for r in receiver.requests)
    return [json.loads(r.body) for r in receiver.requests]


async def test_the_district_reports_registration_and_signing_once(mb, receiver):
    db = mb.router.central
    clock = Clock()
    await set_endpoint(db, "registry", receiver)
    docs = Documents(db, clock=clock, registration_pattern="福收〔{year}〕{seq}号", report=webhook_report("registry", clock))
    kw = dict(partner_org="city", issuing_organ="深圳市地方税务局", number="深地税发〔2026〕7号", title="通知",
              urgency="特急", manifest="{}", message_id="<m@city.test>")
    reg, new = await docs.register(**kw)
    assert new and not (await docs.register(**kw))[1]  # arrives twice: registered (and reported) once
    clock.move(minutes=5)
    await docs.sign(reg.registration_number, "王登记")
    await docs.sign(reg.registration_number, "王登记")  # already signed: nothing new
    await one_round(sender_for(db, clock))
    got = _seen(receiver)
    assert [(g["type"], g["data"]["registration_number"]) for g in got] == [
        ("document.registered", "福收〔2026〕1号"), ("document.signed", "福收〔2026〕1号")]
    assert got[0]["data"] == {"registration_number": "福收〔2026〕1号", "number": "深地税发〔2026〕7号",
                              "issuing_organ": "深圳市地方税务局", "from_org": "city", "title": "通知",
                              "urgency": "特急", "at": "2026-12-04T09:00:00+00:00"}
    assert got[1]["data"]["signed_by"] == "王登记" and got[1]["data"]["at"] == "2026-12-04T09:05:00+00:00"


async def test_the_city_reports_each_recipient_steps_once_whatever_the_receipt_order(mb, receiver):
    db = mb.router.central
    clock = Clock()
    await set_endpoint(db, "oa", receiver)
    docs = Documents(db, clock=clock, report=webhook_report("oa", clock))
    await docs.record_dispatch(issuing_organ="市局", year=2026, number="市发〔2026〕1号", title="通知", urgency="",
                               manifest="{}", sender="fawen@city.test",
                               recipients={"futian": ("<1@c>", "q1"), "luohu": ("<2@c>", "q2")})
    await docs.track("市发〔2026〕1号", "futian", "registered", registration_number="福收〔2026〕1号")
    await docs.track("市发〔2026〕1号", "futian", "delivered")
    await docs.track("市发〔2026〕1号", "futian", "delivered")  # a repeated receipt
    await docs.track("市发〔2026〕1号", "luohu", "signed", signed_by="李四", registration_number="罗收〔2026〕3号")
    await one_round(sender_for(db, clock))
    got = [(g["type"], g["data"]["org"], g["data"].get("registration_number"), g["data"]["issuing_organ"])
           for g in _seen(receiver)]
    assert sorted(got) == sorted([("document.registered", "futian", "福收〔2026〕1号", "市局"),
                                  ("document.delivered", "futian", None, "市局"),
                                  ("document.signed", "luohu", "罗收〔2026〕3号", "市局")])


async def test_without_an_endpoint_nothing_is_recorded_and_the_step_still_counts(mb):
    docs = Documents(mb.router.central, report=webhook_report("nobody"))
    reg, new = await docs.register(partner_org="city", issuing_organ="市局", number="市发〔2026〕2号", title="通知",
                                   urgency="", manifest="{}", message_id="<n@c>")
    assert new and (await docs.sign(reg.registration_number, "张三"))[1]



async def test_each_new_step_tells_reported_once_its_callback_is_committed(mb, receiver):
    """`reported` (the server passes its Sender.poke) is told once per new step, after the step's transaction: a
    sender woken then finds the callback at once, not at its next poll (the signing callback waited up to 5 s)."""
    db = mb.router.central
    clock = Clock()
    await set_endpoint(db, "registry", receiver)
    told: list[int] = []

    async def committed_callbacks() -> int:
        async with db.read() as conn:  # a read transaction sees committed rows only
            return (await conn.execute(select(func.count()).select_from(t.webhook_outbox))).scalar()

    docs = Documents(db, clock=clock, registration_pattern="福收〔{year}〕{seq}号",
                     report=webhook_report("registry", clock), reported=lambda: told.append(len(told) + 1))
    kw = dict(partner_org="city", issuing_organ="深圳市地方税务局", number="深地税发〔2026〕7号", title="通知",
              urgency="特急", manifest="{}", message_id="<m@city.test>")
    reg, _ = await docs.register(**kw)
    assert told == [1] and await committed_callbacks() == 1
    await docs.register(**kw)  # a repeat: nothing new, nothing told
    await docs.sign(reg.registration_number, "王登记")
    await docs.sign(reg.registration_number, "王登记")  # already signed
    assert told == [1, 2] and await committed_callbacks() == 2
