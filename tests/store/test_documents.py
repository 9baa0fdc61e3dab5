"""Official documents in the store: partners, a document number once per organ and year, tracking set once, registration once and numbered per year, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from mailboxes.documents import Documents, check_pattern
from mailboxes.errors import AlreadyExists, InvalidInput, NotFound


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 31, 15, 0, tzinfo=timezone.utc)  # 23:00 in China

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def docs(two_stores):
    m1, m2, _ = two_stores
    clock = Clock()
    return (Documents(m1.router.central, clock=clock, registration_pattern="福收〔{year}〕{seq}号"),
            Documents(m2.router.central, clock=clock, registration_pattern="福收〔{year}〕{seq}号"), clock)


async def test_partners_are_added_once_found_by_code_or_domain_and_removed(docs):
    d, _, _ = docs
    p = await d.add_partner("futian", "Futian.City.Test.", name="福田区税务局")
    assert (p.domain, p.address) == ("futian.city.test", "documents@futian.city.test")
    assert (await d.partner(domain="FUTIAN.city.test")).org == "futian"
    with pytest.raises(AlreadyExists):
        await d.add_partner("futian", "other.test")
    for org, dom in (("bad org", "x.test"), ("福田", "x.test"), ("ok", "nodot"), ("ok", "a@b.test")):
        with pytest.raises(InvalidInput):
            await d.add_partner(org, dom)
    await d.remove_partner("futian")
    with pytest.raises(NotFound):
        await d.partner("futian")
    with pytest.raises(NotFound):
        await d.remove_partner("futian")


async def test_a_document_number_is_dispatched_once_per_organ_and_year_even_from_two_nodes(docs):
    a, b, _ = docs
    kw = dict(issuing_organ="深圳市地方税务局", year=2026, number="深地税发〔2026〕7号", title="通知", urgency="特急",
              manifest="{}", sender="dispatch@city.test")
    results = await asyncio.gather(a.record_dispatch(**kw, recipients={"futian": ("<1@c>", "q1")}),
                                   b.record_dispatch(**kw, recipients={"luohu": ("<2@c>", "q2")}),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["AlreadyExists", "int"]
    assert await a.dispatched("深圳市地方税务局", 2026, "深地税发〔2026〕7号")
    # Another organ may use the same number; the next year's counter starts again.
    await a.record_dispatch(**{**kw, "issuing_organ": "福田区税务局"}, recipients={})
    await a.record_dispatch(**{**kw, "year": 2027, "number": "深地税发〔2027〕7号"}, recipients={})


async def test_tracking_times_are_set_once_whatever_order_receipts_arrive_in(docs):
    d, _, clock = docs
    await d.record_dispatch(issuing_organ="市局", year=2026, number="深地税发〔2026〕8号", title="通知", urgency="",
                            manifest="{}", sender="s@city.test",
                            recipients={"futian": ("<a@c>", "qa"), "luohu": ("<b@c>", "qb")})
    [t1, t2] = await d.tracking(number="深地税发〔2026〕8号")
    assert (t1.org, t1.state, t2.state) == ("futian", "queued", "queued")
    # The queue's outcome by queue id: sent once; a message that is no document's changes nothing.
    assert await d.queue_outcome("qa", sent=True) and not await d.queue_outcome("qa", sent=True)
    assert not await d.queue_outcome("not-a-document", sent=True)
    assert await d.queue_outcome("qb", sent=False, failure="550 5.1.1 no such mailbox")
    [t1, t2] = await d.tracking(number="深地税发〔2026〕8号")
    assert (t1.state, t2.state, t2.failure) == ("sent", "failed", "550 5.1.1 no such mailbox")
    first = clock.now + timedelta(minutes=1)
    assert await d.track("深地税发〔2026〕8号", "futian", "signed", at=first, signed_by="李四")
    assert await d.track("深地税发〔2026〕8号", "futian", "registered", at=first, registration_number="福收〔2026〕1号")
    assert not await d.track("深地税发〔2026〕8号", "futian", "signed", at=first + timedelta(hours=1), signed_by="王五")
    [t1, t2] = await d.tracking(number="深地税发〔2026〕8号")
    assert (t1.state, t1.signed_at, t1.signed_by, t1.registration_number) == ("signed", first, "李四", "福收〔2026〕1号")
    assert t2.state == "failed"
    with pytest.raises(NotFound):
        await d.track("深地税发〔2026〕99号", "futian", "delivered")
    with pytest.raises(InvalidInput):
        await d.track("深地税发〔2026〕8号", "futian", "read")


async def test_a_document_arriving_twice_or_on_two_nodes_is_registered_once_and_numbers_follow_per_year(docs):
    a, b, clock = docs
    kw = dict(partner_org="city", issuing_organ="市局", title="通知", urgency="", manifest="{}", message_id="<m@c>")
    got = await asyncio.gather(*(x.register(**kw, number="深地税发〔2026〕9号") for x in (a, b, a, b)))
    assert sorted(new for _, new in got) == [False, False, False, True]
    assert {r.registration_number for r, _ in got} == {"福收〔2026〕1号"}
    # Different documents registered at once on two nodes get consecutive numbers, none twice.
    got = await asyncio.gather(*((a, b)[i % 2].register(**kw, number=f"深地税发〔2026〕{10 + i}号") for i in range(6)))
    assert sorted(r.registration_number for r, _ in got) == sorted(f"福收〔2026〕{n}号" for n in range(2, 8))
    clock.now += timedelta(hours=2)  # 01:00 on 1 January 2027 in China (still 2026 in UTC): numbering starts again
    r, new = await a.register(**kw, number="深地税发〔2027〕1号")
    assert new and r.registration_number == "福收〔2027〕1号"
    # Signing for it once; a second signature changes nothing.
    s, signed = await a.sign("福收〔2027〕1号", "李四")
    assert signed and s.signed_by == "李四" and s.signed_at == clock.now
    s, signed = await b.sign("福收〔2027〕1号", "王五")
    assert not signed and s.signed_by == "李四"
    with pytest.raises(NotFound):
        await a.sign("福收〔2027〕99号", "李四")
    with pytest.raises(InvalidInput):
        await a.sign("福收〔2027〕1号", " ")
    assert [r.registration_number for r in await a.registrations(unsigned_only=True)][:1] == ["福收〔2026〕7号"]


async def test_quarantine_keeps_the_message_and_the_reason(docs):
    d, _, _ = docs
    qid = await d.quarantine(sender="forger@evil.test", reason="DKIM signature does not verify", raw=b"x" * 1000)
    [(got_id, _, sender, reason, size)] = await d.quarantined()
    assert (got_id, sender, reason, size) == (qid, "forger@evil.test", "DKIM signature does not verify", 1000)


def test_registration_patterns_are_checked():
    check_pattern("收〔{year}〕{seq}号")
    for bad in ("收{year}", "{seq}{nope}", "{0}{seq}", "{seq}" + "x" * 100):
        with pytest.raises(InvalidInput):
            check_pattern(bad)


async def test_tracking_is_narrowed_by_document_sender_and_organ_and_registrations_found_by_id(docs):
    a, b, _ = docs
    kw = dict(year=2026, title="通知", urgency="", manifest="{}")
    one = await a.record_dispatch(**kw, issuing_organ="市局", number="市发〔2026〕1号", sender="x@city.test",
                                  recipients={"futian": ("<1@c>", "q1"), "luohu": ("<2@c>", "q2")})
    two = await a.record_dispatch(**kw, issuing_organ="区局", number="市发〔2026〕1号", sender="y@city.test",
                                  recipients={"futian": ("<3@c>", "q3")})
    assert [(r.document_id, r.org) for r in await b.tracking(document_id=one)] == [(one, "futian"), (one, "luohu")]
    assert {r.document_id for r in await b.tracking(sender="y@city.test")} == {two}
    assert {r.document_id for r in await b.tracking(number="市发〔2026〕1号", issuing_organ="市局")} == {one}
    assert await b.tracking(document_id=one, sender="y@city.test") == []
    reg, _ = await a.register(partner_org="city", issuing_organ="市局", number="市发〔2026〕1号", title="通知",
                              urgency="", manifest="{}", message_id="<m@c>")
    assert (await b.registration_by_id(reg.id)).registration_number == reg.registration_number
    with pytest.raises(NotFound):
        await b.registration_by_id(reg.id + 1)


async def test_registrations_page_waiting_urgent_ones_first_and_dispatched_documents_page_newest_first(docs):
    a, b, clock = docs
    made = {}
    for n, urgency in enumerate(("", "加急", "特急", "", "特急")):
        reg, _ = await a.register(partner_org="city", issuing_organ="市局", number=f"市发〔2026〕{n + 1}号",
                                  title=f"文{n}", urgency=urgency, manifest="{}", message_id=f"<{n}@c>")
        made[n] = reg
    await a.sign(made[4].registration_number, "王")  # signed for: no longer ahead of the rest
    order = [r.title for r in await b.registrations(urgent_first=True, limit=10)]
    assert order == ["文2", "文1", "文4", "文3", "文0"]
    assert [r.title for r in await b.registrations(urgent_first=True, offset=2, limit=2)] == ["文4", "文3"]
    assert [r.title for r in await b.registrations(limit=2)] == ["文4", "文3"]  # plain: newest first
    assert await b.count_registrations() == (5, 4)
    kw = dict(year=2026, title="通知", urgency="", manifest="{}")
    ids = [await a.record_dispatch(**kw, issuing_organ="市局", number=f"市发〔2026〕{n}号",
                                   sender="y@city.test" if n == 2 else "x@city.test",
                                   recipients={"futian": (f"<{n}@c>", f"q{n}")}) for n in range(1, 5)]
    assert await b.dispatched_page(limit=2) == ([ids[3], ids[2]], 4)
    assert await b.dispatched_page(sender="x@city.test", offset=1, limit=5) == ([ids[2], ids[0]], 3)
    rows = await b.tracking(document_ids=[ids[0], ids[3]])
    assert [r.document_id for r in rows] == [ids[3], ids[0]]
