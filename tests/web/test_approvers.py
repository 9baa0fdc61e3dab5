"""Department leaders approve their department's held mail (issue 13), over SMTP submission and the webmail.

The organisation of tests/web/people.py: city > fin > audit, and hr beside city.
Leaders: boss leads city, fa leads fin (audit has none: fin's leader decides), ha leads hr
until it is cleared; clerk (and test_approvals' leader@) is the office, the `[labels] approvers` group.
"""

from __future__ import annotations

import re
import smtplib

import pytest

from delivery.approval import Approvals
from delivery.queue import Queue
from mailboxes.held import HeldMail
from mailboxes.leaders import DepartmentLeaders
from tests.protocol.imap.harness import wait_for

from .harness import PASSWORD, Browser, csrf_of
from .people import Api, make_org
from .test_approvals import web  # noqa: F401 (the fixture: labels enforced, office@city.test approves)

OUTSIDE = "wang@example.org"


@pytest.fixture
def org(web):
    found = make_org(web)

    async def leaders():
        await web.mb.add_account("clerk@city.test", password=PASSWORD, display_name="办公室")
        await web.mb.directory.set_group_members("office@city.test", add=["clerk@city.test"])
        lead = DepartmentLeaders(web.mb.router.central)
        for dept, who in (("city", "boss@city.test"), ("fin", "fa@city.test"), ("hr", "ha@city.test")):
            await lead.set(dept, who)
    web.run(leaders())
    return found


def _send(web, sender: str, subject: str) -> None:
    raw = (f"From: {sender}\r\nTo: {OUTSIDE}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject}@city.test>\r\n\r\n名单附后。\r\n").encode()
    with smtplib.SMTP("127.0.0.1", web.smtp.addresses["submission"][1], timeout=30) as s:
        s.login(sender, PASSWORD)
        assert s.sendmail(sender, [OUTSIDE], raw) == {}


def _held(web) -> dict[str, object]:
    return {h.subject: h for h in web.run(HeldMail(web.mb.router.central).pending())}


async def _browser(web, who: str) -> Browser:
    b = Browser(web.url)
    await b.sign_in(who, PASSWORD)
    return b


async def _requests(web, address: str) -> list[int]:
    """The held ids named by the approval requests in this account's INBOX."""
    acct = await web.mb.directory.account(address)
    f = await web.mb.store.folder(acct, "INBOX")
    metas = await web.mb.store.messages(f.ref)
    raws = await web.mb.store.raw_many(f.ref.partition, [m.blob_id for m in metas])
    return sorted(int(i) for m in metas for i in re.findall(rb"/approvals/(\d+)", raws[m.blob_id]))


async def _queued(web) -> list[str]:
    return sorted(e.queue_id for e in await Queue(web.mb.router.central, node="test").entries())


async def test_the_senders_leader_decides_and_no_other_leader_sees_it(web, org):
    _send(web, "f1@city.test", "fin report")  # fin: its leader fa
    _send(web, "a1@city.test", "audit report")  # audit has no leader: fin's
    _send(web, "fa@city.test", "leader's own")  # fa leads fin: not their own, city's boss
    held = _held(web)
    assert {s: h.approver for s, h in held.items()} == {
        "fin report": "fa@city.test", "audit report": "fa@city.test", "leader's own": "boss@city.test"}
    fin, audit, own = held["fin report"].id, held["audit report"].id, held["leader's own"].id
    # The request goes by mail to the leader asked, not to the office.
    assert web.run(_requests(web, "fa@city.test")) == sorted([fin, audit])
    assert web.run(_requests(web, "boss@city.test")) == [own]
    assert web.run(_requests(web, "clerk@city.test")) == []

    fa, ha, f1, boss = [await _browser(web, w) for w in ("fa@city.test", "ha@city.test", "f1@city.test",
                                                          "boss@city.test")]
    try:
        r, page = await fa.get("/mail")
        assert re.search(r'id="nav-approvals"[^>]*>.*id="nav-approvals-count"[^>]*>2<', page)
        r, page = await fa.get("/approvals")
        assert sorted(int(i) for i in re.findall(r'data-held-id="(\d+)"', page)) == sorted([fin, audit])
        _, page = await f1.get("/mail")
        assert 'id="nav-approvals"' not in page  # a sender who approves nothing has no link
        r, _ = await f1.get("/approvals")
        assert r.status == 404
        # Another department's leader: a leader, so the link, but nothing of fin's.
        r, page = await ha.get("/approvals")
        assert r.status == 200 and 'id="no-held"' in page
        _, page = await ha.get("/mail")
        assert 'id="nav-approvals"' in page and 'id="nav-approvals-count"' not in page
        csrf = csrf_of(page)
        for held_id in (fin, audit, own):
            r, _ = await ha.get(f"/approvals/{held_id}")
            assert r.status == 404
            r, _ = await ha.post(f"/approvals/{held_id}/approve", {"csrf": csrf}, allow_redirects=False)
            assert r.status == 404
        # The leader who sent it does not see their own; the parent's leader does.
        r, _ = await fa.get(f"/approvals/{own}")
        assert r.status == 404
        r, page = await boss.get(f"/approvals/{own}")
        assert r.status == 200 and "名单附后" in page
        # The parent's leader does not decide for a department that has its own leader.
        r, _ = await boss.get(f"/approvals/{fin}")
        assert r.status == 404

        before = web.run(_queued(web))
        r, page = await fa.get(f"/approvals/{fin}")
        r, page = await fa.post(f"/approvals/{fin}/approve", {"csrf": csrf_of(page)})
        assert r.status == 200 and 'id="approval-done"' in page
        assert re.search(r'id="nav-approvals-count"[^>]*>1<', page)
        r, _ = await boss.post(f"/approvals/{own}/reject", {"csrf": csrf_of((await boss.get("/approvals"))[1]),
                                                             "reason": "请先请示"})
        assert r.status == 200
        r, page = await fa.post(f"/approvals/{audit}/approve", {"csrf": csrf_of((await fa.get("/approvals"))[1])})
        assert r.status == 200 and 'id="nav-approvals-count"' not in page
    finally:
        for b in (fa, ha, f1, boss):
            await b.close()
    assert len(web.run(_queued(web))) == len(before) + 2  # fin report and audit report released
    assert _held(web) == {}
    audit_log = [(e["actor"], e["action"]) for e in web.run(web.mb.directory.audit_entries(100))]
    assert ("fa@city.test", "approved") in audit_log and ("boss@city.test", "rejected") in audit_log


async def test_no_leader_on_the_way_up_means_the_office(web, org):
    web.run(DepartmentLeaders(web.mb.router.central).set("hr", None))
    _send(web, "h1@city.test", "hr notice")  # hr has no parent: the office
    _send(web, "bob@city.test", "no department")
    _send(web, "clerk@city.test", "office's own")  # the office's member: the other members decide
    held = _held(web)
    assert {s: h.approver for s, h in held.items()} == {"hr notice": None, "no department": None,
                                                         "office's own": None}
    own = held.pop("office's own").id
    assert web.run(_requests(web, "clerk@city.test")) == sorted(h.id for h in held.values())
    assert web.run(_requests(web, "leader@city.test")) == sorted([own, *(h.id for h in held.values())])
    ha, clerk = await _browser(web, "ha@city.test"), await _browser(web, "clerk@city.test")
    try:
        _, page = await ha.get("/mail")
        assert 'id="nav-approvals"' not in page  # no longer a leader
        r, _ = await ha.get(f"/approvals/{held['hr notice'].id}")
        assert r.status == 404
        _, page = await clerk.get("/mail")
        assert re.search(r'id="nav-approvals-count"[^>]*>2<', page)  # not its own
        r, _ = await clerk.get(f"/approvals/{own}")
        assert r.status == 404
        r, page = await clerk.get(f"/approvals/{held['hr notice'].id}")
        r, page = await clerk.post(f"/approvals/{held['hr notice'].id}/approve", {"csrf": csrf_of(page)})
        assert r.status == 200
    finally:
        await ha.close()
        await clerk.close()
    assert sorted(_held(web)) == ["no department", "office's own"]


async def test_only_an_administrator_names_a_leader_in_the_console_and_the_api(web, org):
    from .openapi_check import validate_response

    alice, fa = await _browser(web, "alice@city.test"), await _browser(web, "fa@city.test")
    try:
        _, page = await alice.get("/admin/departments")
        assert 'id="dept-' in page and 'value="ha@city.test"' in page
        r, page = await alice.post("/admin/departments/hr/leader", {"csrf": csrf_of(page), "leader": "h1@city.test"})
        assert r.status == 200 and 'value="h1@city.test"' in page
        r, page = await alice.post("/admin/departments/hr/leader", {"csrf": csrf_of(page), "leader": "no@city.test"})
        assert r.status == 400 and "no@city.test" in page
        _, page = await fa.get("/admin/departments")
        assert "/leader" not in page  # a department admin sees no leader form
        r, _ = await fa.post("/admin/departments/fin/leader", {"csrf": csrf_of(page), "leader": "f1@city.test"})
        assert r.status == 403
        r, _ = await fa.post("/admin/departments/hr/leader", {"csrf": csrf_of(page), "leader": "f1@city.test"})
        assert r.status == 404  # not in its subtree
    finally:
        await alice.close()
        await fa.close()
    api = Api(web, org.tokens["alice@city.test"], check=validate_response)
    status, body, _ = await api("GET", "/departments/fin")
    assert status == 200 and body["leader"] == "fa@city.test"
    status, body, _ = await api("PATCH", "/departments/audit", {"leader": "a1@city.test"})
    assert status == 200 and body["leader"] == "a1@city.test" and body["name"] == "审计科"
    status, body, _ = await api("PATCH", "/departments/audit", {"leader": None})
    assert status == 200 and body["leader"] is None
    status, body, _ = await api("PATCH", "/departments/audit", {})
    assert status == 400
    fa_api = Api(web, org.tokens["fa@city.test"], check=validate_response)
    status, _, _ = await fa_api("PATCH", "/departments/audit", {"leader": "fa@city.test"})
    assert status == 403
    leaders = {d.code: d.leader for d in web.run(web.mb.directory.list_departments())}
    assert leaders == {"city": "boss@city.test", "fin": "fa@city.test", "audit": None, "hr": "h1@city.test"}
    changes = [e for e in web.run(web.mb.directory.audit_entries(100)) if e["action"] == "department.update"]
    assert len(changes) == 3 and all(e["actor"] == "alice@city.test" for e in changes)


async def test_what_waits_goes_to_the_new_leader_when_the_leader_changes(web, org):
    """A leader replaced or cleared no longer decides what was held before; the leader now does."""
    _send(web, "f1@city.test", "before the change")  # asked: fa, fin's leader
    [held] = _held(web).values()
    assert held.approver == "fa@city.test"
    lead = DepartmentLeaders(web.mb.router.central)
    web.run(lead.set("fin", "ha@city.test"))  # ha now leads fin (and still hr)
    fa, ha, boss = [await _browser(web, w) for w in ("fa@city.test", "ha@city.test", "boss@city.test")]
    try:
        r, page = await ha.get("/approvals")
        assert [int(i) for i in re.findall(r'data-held-id="(\d+)"', page)] == [held.id]
        r, _ = await fa.get(f"/approvals/{held.id}")
        assert r.status == 404  # no longer leads anyone: not theirs to decide
        r, page = await boss.get(f"/approvals/{held.id}")
        assert r.status == 404  # fin has a leader: city's does not decide for it
        web.run(lead.set("fin", None))  # no leader in fin: the parent's leader, city's boss
        r, _ = await ha.get(f"/approvals/{held.id}")
        assert r.status == 404
        r, page = await boss.get("/approvals")
        assert [int(i) for i in re.findall(r'data-held-id="(\d+)"', page)] == [held.id]
        r, page = await boss.get(f"/approvals/{held.id}")
        r, page = await boss.post(f"/approvals/{held.id}/approve", {"csrf": csrf_of(page)})
        assert r.status == 200 and 'id="approval-done"' in page
    finally:
        for b in (fa, ha, boss):
            await b.close()
    assert _held(web) == {}
    assert held.approver == "fa@city.test"  # who was asked at the time is kept


def _round(web) -> None:
    """One more round of the running rerouter (poked, then waited for)."""
    rerouter = web.ctx.extras["rerouter"]
    done = rerouter.rounds
    web.loop.call_soon_threadsafe(rerouter.poke)
    wait_for(lambda: rerouter.rounds > done, timeout=30, what="a rerouting round")


async def test_a_new_leader_is_mailed_what_waits_for_them_once(web, org):
    """When a leader changes, the rerouter sends the new leader the request the first one had: at once when
    the change is made through the server's process (the console), else at its next round (the CLI, another
    node); once, whichever nodes look; cleared: the parent's leader."""
    _send(web, "f1@city.test", "before the change")
    [held] = _held(web).values()
    assert web.run(_requests(web, "fa@city.test")) == [held.id]
    lead = DepartmentLeaders(web.mb.router.central)
    rerouter = web.ctx.extras["rerouter"]
    sent = rerouter.sent_on
    web.run(lead.set("fin", "ha@city.test"))  # through the server's own store, as the console: it is told
    wait_for(lambda: rerouter.sent_on > sent, timeout=30, what="the rerouter to send the request on")
    assert web.run(_requests(web, "ha@city.test")) == [held.id]
    assert web.run(HeldMail(web.mb.router.central).get(held.id)).approver == "ha@city.test"
    other_node = Approvals(web.ctx.extras["delivery"].submitter)  # a second node's look: nothing left to send
    assert web.run(other_node.reroute()) == 0
    _round(web)
    assert web.run(_requests(web, "ha@city.test")) == [held.id]  # once
    assert web.run(_requests(web, "fa@city.test")) == [held.id]  # nothing more to the one replaced
    web.run(lead.set("fin", None))  # fin without a leader: city's boss
    _round(web)
    assert web.run(_requests(web, "boss@city.test")) == [held.id]
    moves = [e for e in web.run(web.mb.directory.audit_entries(100)) if e["action"] == "held.rerouted"]
    assert len(moves) == 2
