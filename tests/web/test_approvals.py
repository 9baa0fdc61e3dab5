"""The approvals pages over real HTTP: only the office sees held mail, approve queues it, reject returns it (issue 13)."""

from __future__ import annotations

import email
import re
from email.policy import default
import smtplib

import aiohttp
import pytest

from delivery.queue import Queue
from mailboxes.held import HeldMail
from mailserver.config import Config

from .harness import PASSWORD, Browser, WebServer, csrf_of


@pytest.fixture
def web(tmp_path):
    srv = WebServer(tmp_path)
    values = {section: dict(keys) for section, keys in srv.config.values.items()}
    values["labels"].update(enabled=True, approvers="office@city.test")
    srv.config = Config(srv.config.path, values)
    srv.start()
    for name in ("leader",):
        srv.run(srv.add_account(name))
    srv.run(srv.mb.directory.add_group("office@city.test", "办公室"))
    srv.run(srv.mb.directory.set_group_members("office@city.test", add=["leader@city.test"]))
    yield srv
    srv.stop()


def _send(web, subject: str) -> None:
    raw = (f"From: alice@city.test\r\nTo: wang@example.org\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject}@city.test>\r\n\r\n名单附后。\r\n").encode()
    with smtplib.SMTP("127.0.0.1", web.smtp.addresses["submission"][1], timeout=30) as s:
        s.login("alice@city.test", PASSWORD)
        assert s.sendmail("alice@city.test", ["wang@example.org"], raw) == {}


async def test_only_approvers_decide_and_each_decision_is_taken_once(web):
    _send(web, "first")
    _send(web, "second")
    leader, alice = Browser(web.url), Browser(web.url)
    try:
        await leader.sign_in("leader@city.test")
        await alice.sign_in("alice@city.test")
        r, page = await leader.get("/approvals")
        assert r.status == 200
        ids = [int(i) for i in re.findall(r'data-held-id="(\d+)"', page)]
        assert len(ids) == 2 and "wang@example.org" in page
        for path in ("/approvals", f"/approvals/{ids[0]}"):  # the sender (not an approver) sees nothing
            r, _ = await alice.get(path)
            assert r.status == 404
        r, page = await leader.get(f"/approvals/{ids[0]}")
        assert r.status == 200 and "名单附后" in page and "X-Postroom-Classification" in page
        csrf = csrf_of(page)
        r, _ = await leader.post(f"/approvals/{ids[0]}/approve", {}, allow_redirects=False)
        assert r.status == 403  # no CSRF token
        r, _ = await alice.post(f"/approvals/{ids[0]}/approve", {"csrf": csrf_of((await alice.get("/mail"))[1])})
        assert r.status == 404
        r, page = await leader.post(f"/approvals/{ids[0]}/approve", {"csrf": csrf})
        assert r.status == 200 and 'id="approval-done"' in page
        r, _ = await leader.post(f"/approvals/{ids[0]}/approve", {"csrf": csrf})
        assert r.status == 409
        r, _ = await leader.post(f"/approvals/{ids[1]}/reject", {"csrf": csrf, "reason": ""})
        assert r.status == 400
        r, _ = await leader.post(f"/approvals/{ids[1]}/reject", {"csrf": csrf, "reason": "涉及个人信息"})
        assert r.status == 200
        r, page = await leader.get("/approvals")
        assert 'id="no-held"' in page
    finally:
        await leader.close()
        await alice.close()
    assert web.run(_queue_rcpts(web)) == [["wang@example.org"]]  # the approved one, to its held recipient
    [notice] = [_text(m) for m in web.run(_inbox(web, "alice@city.test")) if b"Not approved by leader" in m]
    assert "涉及个人信息" in notice and "5.7.1" in notice  # the DSN carries the reason


def _text(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=default)
    return "".join(p.get_content() for p in msg.walk() if p.get_content_type() in ("text/plain",
                                                                                    "message/delivery-status")
                   and not p.is_multipart() and isinstance(p.get_content(), str))


async def _queue_rcpts(web) -> list[list[str]]:
    return [[r.rcpt for r in e.recipients] for e in await Queue(web.mb.router.central, node="test").entries()]


async def _inbox(web, address: str) -> list[bytes]:
    acct = await web.mb.directory.account(address)
    f = await web.mb.store.folder(acct, "INBOX")
    metas = await web.mb.store.messages(f.ref)
    raws = await web.mb.store.raw_many(f.ref.partition, [m.blob_id for m in metas])
    return [raws[m.blob_id] for m in metas]


async def test_the_sender_chooses_the_label_in_compose(web):
    alice = Browser(web.url)
    try:
        await alice.sign_in("alice@city.test")
        for label, subject in (("公开", "press release"), ("敏感", "staff list")):
            _, page = await alice.get("/compose")
            assert '<select id="classification" name="classification">' in page
            assert '<option value="内部" selected>' in page  # the default is preselected
            form = aiohttp.FormData()
            for k, v in {"csrf": csrf_of(page), "mode": "new", "to": "wang@example.org", "cc": "", "bcc": "",
                         "subject": subject, "body": "正文", "classification": label}.items():
                form.add_field(k, v)
            r, _ = await alice.post("/compose", form)
            assert r.status == 200
    finally:
        await alice.close()
    queued = web.run(_queue_rcpts(web))
    assert queued == [["wang@example.org"]]  # 公开 goes at once
    held = web.run(_held_subjects(web))
    assert held == ["staff list"]  # 敏感 waits for the office


async def _held_subjects(web) -> list[str]:
    return [h.subject for h in await HeldMail(web.mb.router.central).pending()]
