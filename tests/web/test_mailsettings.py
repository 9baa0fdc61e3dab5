"""Mail settings set in the webmail act at delivery: out-of-office replies to a real outside peer, rules seen over IMAP, the signature in compose.

The whole server runs in-process (tests/web/harness.py); mail comes in over
port 25 with smtplib, the auto-reply leaves through the queue worker to a
recording peer on loopback (tests/protocol/smtp/fakenet.Peer) and folders
and flags are read back with imaplib.
"""

from __future__ import annotations

import email
import email.policy
import html
import imaplib
import re
import smtplib
from datetime import datetime, timedelta, timezone

import pytest

from delivery.worker import Worker
from mailboxes.mailsettings import OOO_ZONE
from tests.protocol.imap.harness import message
from tests.protocol.imap.harness import wait_for as wait_until
from tests.protocol.smtp.fakenet import Peer

from .harness import PASSWORD, Browser, csrf_of

STRANGER = "wang.fang@outside.example"


def _worker(web) -> Worker:
    return next(s for s in web.services if isinstance(s, Worker))


@pytest.fixture
def outside(web):
    """A recording SMTP peer for outside.example, on the server's loop."""
    peer = web.run(Peer(ip="127.0.0.16", starttls=False).start())
    web.run(_worker(web).outbound.routes.add("outside.example", f"{peer.ip}:{peer.port}"))
    yield peer
    web.run(peer.stop())


def smtp_in(web, data: bytes, *, mail_from: str = STRANGER, to: str = "alice@city.test") -> None:
    """Mail from another server on port 25; returns when the copies are written and any auto-reply is queued."""
    with smtplib.SMTP("127.0.0.1", web.smtp_port, timeout=30) as s:
        s.sendmail(mail_from, [to], data)
    web.run(_worker(web).submitter.personal.settle())


def queue_empty(web) -> bool:
    return web.run(_worker(web).queue.entries()) == []


def imap(web, user: str = "alice") -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", web.port, timeout=30)
    c.login(f"{user}@city.test", PASSWORD)
    return c


def subjects_and_flags(c: imaplib.IMAP4, folder: str) -> list[tuple[str, str]]:
    typ, _ = c.select(folder)
    assert typ == "OK", folder
    typ, data = c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    if data == [None]:
        return []
    out = []
    for item in data:
        if isinstance(item, tuple):
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode()
            flags = " ".join(f for f in flags.split() if f != "\\Recent")  # per session, not the rules' doing
            subject = item[1].decode().split(":", 1)[1].strip()
            out.append((subject, flags))
    return out


async def save(client: Browser, path: str, **fields: str) -> tuple[int, str]:
    _, page = await client.get("/settings/mail")
    r, page = await client.post(path, {"csrf": csrf_of(page), **fields})
    return r.status, page


async def test_out_of_office_set_in_the_web_answers_an_outside_sender_once(web, client, outside):
    await client.sign_in()
    r, page = await client.get("/settings/mail")
    assert r.status == 200 and 'for="ooo-enabled"' in page and 'for="ooo-body"' in page
    today = datetime.now(OOO_ZONE).date()
    status, page = await save(client, "/settings/out-of-office", enabled="on", start=str(today),
                              end=str(today + timedelta(days=5)), subject="外出 Away", body="我出差了。\nTravelling.",
                              days="7")
    assert status == 200 and 'id="settings-saved"' in page and 'value="外出 Away"' in page
    original = message("预算 budget", sender=STRANGER, msgid="ask1")
    smtp_in(web, original)
    wait_until(lambda: queue_empty(web), what="the reply to leave")
    [reply] = outside.received
    assert reply.mail_from == "<>" and reply.rcpts == [STRANGER]
    m = email.message_from_bytes(reply.data, policy=email.policy.default)
    assert m["Auto-Submitted"] == "auto-replied" and m["In-Reply-To"] == "<ask1@city.test>"
    assert m["Subject"] == "外出 Away" and "我出差了" in m.get_content()
    smtp_in(web, message("again", sender=STRANGER, msgid="ask2"))
    assert queue_empty(web) and len(outside.received) == 1  # once per sender per 7 days
    c = imap(web)
    try:
        assert [s for s, _ in subjects_and_flags(c, "INBOX")][1:] == ["again"]  # both delivered
    finally:
        c.logout()
    # Switched off in the web: nothing more.
    await save(client, "/settings/out-of-office", subject="外出 Away", body="x", days="7")
    smtp_in(web, message("third", sender="other@outside.example", msgid="ask3"))
    assert queue_empty(web) and len(outside.received) == 1


async def test_rules_set_in_the_web_file_and_flag_mail_seen_over_imap(web, client):
    c = imap(web)
    try:
        assert c.create("Work")[0] == "OK" and c.create("Lists")[0] == "OK"
    finally:
        c.logout()
    await client.sign_in()
    for fields in ({"field": "from", "value": "boss@outside.example", "action": "folder", "folder": "Work"},
                   {"field": "subject", "value": "紧急", "action": "flag", "flag": "\\Flagged"},
                   {"field": "subject", "value": "report", "action": "flag", "flag": "Reports"},
                   {"field": "list-id", "value": "news.outside.example", "action": "folder", "folder": "Lists"},
                   {"field": "list-id", "value": "news.outside.example", "action": "seen"}):
        status, page = await save(client, "/settings/rules", **fields)
        assert status == 200 and 'id="settings-saved"' in page, page
    smtp_in(web, message("plan", sender="boss@outside.example"), mail_from="boss@outside.example")
    smtp_in(web, message("紧急 report", sender=STRANGER))
    smtp_in(web, message("weekly news", sender="news@outside.example",
                         extra="List-Id: Outside news <news.outside.example>\r\n"), mail_from="news@outside.example")
    smtp_in(web, message("hello", sender=STRANGER))
    c = imap(web)
    try:
        assert subjects_and_flags(c, "Work") == [("plan", "")]
        assert [f for _, f in subjects_and_flags(c, "Lists")] == ["\\Seen"]
        inbox = subjects_and_flags(c, "INBOX")
        assert len(inbox) == 2 and set(inbox[0][1].split()) == {"\\Flagged", "Reports"} and inbox[1][1] == ""
        # The target folder is deleted: the rule's mail goes to INBOX (and the fall-back is logged).
        assert c.delete("Lists")[0] == "OK"
        smtp_in(web, message("more news", sender="news@outside.example",
                             extra="List-Id: <news.outside.example>\r\n"), mail_from="news@outside.example")
        inbox = subjects_and_flags(c, "INBOX")
        assert inbox[-1] == ("more news", "\\Seen")
    finally:
        c.logout()


async def test_rule_ids_of_another_account_are_404_and_forms_need_csrf(web, client):
    await client.sign_in("bob@city.test")
    status, _ = await save(client, "/settings/rules", field="from", value="x@y.example", action="seen")
    assert status == 200
    bob_rule = web.run(web.mb.settings.rules(web.accounts["bob"].id))[0].id
    alice = Browser(web.url)
    try:
        r, _ = await alice.get("/settings/mail")
        assert r.url.path == "/login"  # signed out: nothing shown
        await alice.sign_in()
        _, page = await alice.get("/settings/mail")
        token = csrf_of(page)
        for op in ("delete", "up"):
            r, _ = await alice.post("/settings/rules/change", {"csrf": token, "rule": str(bob_rule), "op": op})
            assert r.status == 404
        assert len(web.run(web.mb.settings.rules(web.accounts["bob"].id))) == 1
        # Only the account's own folders; a made-up one is refused.
        r, page = await alice.post("/settings/rules", {"csrf": token, "field": "from", "value": "a",
                                                       "action": "folder", "folder": "Nope"})
        assert r.status == 400 and 'id="settings-error"' in page
        for fields, says in (({"enabled": "on", "start": "2026-12-10", "end": "2026-12-09", "body": "x"}, "结束日期早于"),
                             ({"enabled": "on", "body": "  "}, "请填写回复内容"),
                             ({"days": "0", "body": "x"}, "天数格式不正确"),
                             ({"start": "12/10/2026", "body": "x"}, "日期或天数")):
            r, page = await alice.post("/settings/out-of-office", {"csrf": token, "days": "7", **fields})
            assert r.status == 400 and says in page, fields
        assert not web.run(web.mb.settings.out_of_office(web.accounts["alice"].id)).enabled
        for path in ("/settings/out-of-office", "/settings/rules", "/settings/rules/change", "/settings/signature"):
            r, _ = await alice.post(path, {"signature": "x", "enabled": "on", "body": "x"})
            assert r.status == 403, path
        assert web.run(web.mb.settings.signature(web.accounts["alice"].id)) == ""
    finally:
        await alice.close()


async def test_signature_goes_into_new_messages_and_above_the_quote_of_replies(web, client):
    await client.sign_in()
    status, _ = await save(client, "/settings/signature", signature="张伟\n办公室 Office")
    assert status == 200
    _, page = await client.get("/compose")
    body = html.unescape(re.search(r'<textarea id="body"[^>]*>(.*?)</textarea>', page, re.S).group(1))
    assert body == "\n\n-- \n张伟\n办公室 Office"
    web.deliver("alice", message("Budget question", sender="bob@city.test", msgid="q1"))
    _, page = await client.get("/compose?mode=reply&folder=INBOX&uid=1")
    body = html.unescape(re.search(r'<textarea id="body"[^>]*>(.*?)</textarea>', page, re.S).group(1))
    assert body.startswith("\n\n-- \n张伟\n办公室 Office\n\n") and body.index("-- \n") < body.index("> ")


def test_dates_are_whole_days_in_the_offices_zone():
    from mailboxes.mailsettings import OutOfOffice, day_after, day_start

    d = datetime(2026, 12, 4).date()
    ooo = OutOfOffice(True, day_start(d), day_after(d), "", "x")
    assert ooo.active_at(datetime(2026, 12, 3, 16, 0, tzinfo=timezone.utc))  # 00:00 on the 4th in UTC+8
    assert not ooo.active_at(datetime(2026, 12, 3, 15, 59, tzinfo=timezone.utc))
    assert not ooo.active_at(datetime(2026, 12, 4, 16, 0, tzinfo=timezone.utc))
