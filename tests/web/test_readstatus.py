"""Read status and recall end to end: sent by smtplib submission, read over imaplib, status and recall over HTTP, IDLE sees the EXPUNGE."""

from __future__ import annotations

import imaplib
import re
import smtplib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

from imapclient import IMAPClient

from tests.protocol.imap.test_imap_updates import idle_until

from .harness import PASSWORD, Browser, csrf_of

_SENT_ID = re.compile(r'data-sent-id="(\d+)"')


def _message(message_id: str, to: str, subject: str = "会议通知") -> bytes:
    m = EmailMessage()
    m["From"] = "alice@city.test"
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = message_id
    m["Date"] = "Fri, 04 Dec 2026 10:00:00 +0800"
    m.set_content("周五下午三点开会。")
    return bytes(m)


def _submit(web, raw: bytes, rcpts: list[str]) -> None:
    """As a mail client does: submission with AUTH, then APPEND the copy to Sent."""
    with smtplib.SMTP("127.0.0.1", web.smtp.addresses["submission"][1], timeout=30) as s:
        s.login("alice@city.test", PASSWORD)  # plaintext AUTH on loopback, as the harness allows
        assert s.sendmail("alice@city.test", rcpts, raw) == {}
    c = _imap(web, "alice")
    try:
        assert c.append("Sent", r"(\Seen)", None, raw)[0] == "OK"
    finally:
        c.logout()


def _imap(web, user: str) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", web.port, timeout=30)
    c.login(f"{user}@city.test", PASSWORD)
    return c


def _count(web, user: str, folder: str = "INBOX") -> int:
    c = _imap(web, user)
    try:
        typ, data = c.select(folder, readonly=True)
        assert typ == "OK"
        return int(data[0])
    finally:
        c.logout()


async def _sent_id(client: Browser, uid: int) -> tuple[int, str]:
    r, page = await client.get(f"/message?folder=Sent&uid={uid}")
    assert r.status == 200
    m = _SENT_ID.search(page)
    assert m, "no read status under the Sent message"
    return int(m.group(1)), page


async def _setup(web) -> None:
    for name in ("carol", "dave"):
        await web.add_account(name)
    await web.mb.directory.add_group("team@city.test", "项目组")
    await web.mb.directory.set_group_members("team@city.test", add=["carol@city.test", "dave@city.test"])


async def test_status_shows_who_read_and_a_read_message_cannot_be_recalled(web, client):
    await web.loop_run(_setup(web))
    raw = _message("<rs-one@city.test>", "bob@city.test, team@city.test, ann@remote.test")
    _submit(web, raw, ["bob@city.test", "team@city.test", "ann@remote.test"])
    bob = _imap(web, "bob")
    try:  # FETCH BODY[] without PEEK sets \Seen (RFC 3501 §6.4.5)
        bob.select("INBOX")
        typ, data = bob.fetch("1", "(BODY[])")
        assert typ == "OK" and b"\\Seen" in data[0][0] + (data[1] if isinstance(data[1], bytes) else b"")
    finally:
        bob.logout()

    await client.sign_in()
    sent_id, page = await _sent_id(client, 1)
    assert "阅读状态" in page and "未读" in page and 'id="recall"' not in page
    async with client.session.get(f"{client.base}/readstatus/{sent_id}") as resp:
        assert resp.status == 200
        st = await resp.json()
    rows = {c["address"]: c for c in st["recipients"]}
    assert set(rows) == {"bob@city.test", "carol@city.test", "dave@city.test"}  # the group expanded, no remote
    assert all(c["delivered_at"] for c in rows.values())
    assert rows["bob@city.test"]["read"] and rows["bob@city.test"]["first_read_at"] >= rows["bob@city.test"]["delivered_at"]
    assert not rows["carol@city.test"]["read"] and not rows["dave@city.test"]["read"]
    assert st["recallable"] is False

    # English too.
    await client.post("/lang", {"csrf": csrf_of(page), "lang": "en"})
    _, page = await client.get("/message?folder=Sent&uid=1")
    assert "Read status" in page and "unread" in page

    # Recall is refused, clearly, and nothing is removed.
    async with client.session.post(f"{client.base}/readstatus/{sent_id}/recall",
                                   headers={"X-CSRF-Token": csrf_of(page), "Accept": "application/json"}) as resp:
        assert resp.status == 409
        body = await resp.json()
    assert body["recalled"] is False and body["read_by"] == ["bob@city.test"] and "Cannot recall" in body["message"]
    assert [_count(web, u) for u in ("bob", "carol", "dave")] == [1, 1, 1]
    r, page = await client.post(f"/readstatus/{sent_id}/recall", {"csrf": csrf_of(page), "folder": "Sent", "uid": "1"})
    assert r.status == 200 and "recall=refused" in str(r.url) and 'id="recall-notice"' in page

    # Privacy: the copy that leaves the organisation carries nothing of the tracking.
    db = sqlite3.connect(web.storage_url.removeprefix("sqlite:///"))
    try:
        [(queued,)] = db.execute("SELECT data FROM queue_messages").fetchall()
    finally:
        db.close()
    head = bytes(queued).replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    names = {line.split(b":", 1)[0].lower() for line in head.split(b"\n") if line and line[:1] not in b" \t"}
    assert names - {b"dkim-signature", b"received"} == {b"from", b"to", b"subject", b"message-id", b"date",
                                                          b"content-type", b"content-transfer-encoding",
                                                          b"mime-version"}


async def test_other_accounts_get_404_for_status_and_recall(web, client):
    await web.loop_run(_setup(web))
    _submit(web, _message("<rs-two@city.test>", "carol@city.test"), ["carol@city.test"])
    await client.sign_in()
    sent_id, _ = await _sent_id(client, 1)
    other = Browser(web.url)
    try:
        _, page = await other.sign_in("carol@city.test")  # even a recipient of it
        r, _ = await other.get(f"/readstatus/{sent_id}")
        assert r.status == 404
        r, _ = await other.get(f"/readstatus/{sent_id + 1000}")
        assert r.status == 404
        _, page = await other.get("/mail")
        r, _ = await other.post(f"/readstatus/{sent_id}/recall", {"csrf": csrf_of(page)})
        assert r.status == 404
        r, _ = await other.post(f"/readstatus/{sent_id}/recall", {})  # and no CSRF token: refused first
        assert r.status == 403
        # Opening it in the webmail is a read too (the store sets \Seen).
        r, _ = await other.get("/message?folder=INBOX&uid=1")
        assert r.status == 200
    finally:
        await other.close()
    assert _count(web, "carol") == 1
    async with client.session.get(f"{client.base}/readstatus/{sent_id}") as resp:
        [carol] = (await resp.json())["recipients"]
    assert carol["address"] == "carol@city.test" and carol["read"]


async def test_recall_of_an_unread_message_expunges_every_copy_and_idle_sees_it(web, client):
    await web.loop_run(_setup(web))
    _submit(web, _message("<rs-three@city.test>", "bob@city.test, carol@city.test"),
            ["bob@city.test", "carol@city.test"])
    carol = _imap(web, "carol")
    try:  # carol files it away unread
        assert carol.create("Projects")[0] == "OK"
        carol.select("INBOX")
        assert carol.uid("MOVE", "1", "Projects")[0] == "OK"
    finally:
        carol.logout()
    assert _count(web, "carol", "Projects") == 1

    idle = IMAPClient("127.0.0.1", port=web.port, ssl=False, timeout=30)
    idle.login("bob@city.test", PASSWORD)
    idle.select_folder("INBOX")
    idle.idle()
    try:
        await client.sign_in()
        sent_id, page = await _sent_id(client, 1)
        assert 'id="recall"' in page
        with ThreadPoolExecutor(1) as pool:
            seen = pool.submit(idle_until, idle, (1, b"EXPUNGE"))
            r, page = await client.post(f"/readstatus/{sent_id}/recall",
                                        {"csrf": csrf_of(page), "folder": "Sent", "uid": "1"})
            assert r.status == 200 and "recall=done" in str(r.url)
            assert (1, b"EXPUNGE") in seen.result(60)
    finally:
        idle.idle_done()
        idle.logout()
    assert "邮件已撤回" in page and 'id="recall"' not in page
    assert _count(web, "bob") == 0 and _count(web, "carol", "Projects") == 0
    async with client.session.get(f"{client.base}/readstatus/{sent_id}") as resp:
        st = await resp.json()
    assert st["recalled_at"] and all(c["recalled_at"] and not c["read"] for c in st["recipients"])
    assert _count(web, "alice", "Sent") == 1  # the sender keeps the Sent copy
    entries = await web.loop_run(web.mb.directory.audit_entries(5))
    assert any(e["action"] == "message.recall" and e["actor"] == "alice@city.test" for e in entries)


async def test_a_copy_a_rule_filed_is_tracked_where_it_went(web, client):
    """The recipient's rule files the copy into a folder: reading it there is a read; recall finds it there."""
    async def setup():
        bob = await web.mb.directory.account("bob@city.test")
        await web.mb.store.create_folder(bob, "Meetings")
        await web.mb.settings.add_rule(bob.id, "subject", "会议", "folder", "Meetings")
    await web.loop_run(setup())
    _submit(web, _message("<rs-rule-1@city.test>", "bob@city.test", subject="会议通知"), ["bob@city.test"])
    _submit(web, _message("<rs-rule-2@city.test>", "bob@city.test", subject="会议改期"), ["bob@city.test"])
    assert _count(web, "bob", "Meetings") == 2 and _count(web, "bob", "INBOX") == 0
    bob = _imap(web, "bob")
    try:
        bob.select("Meetings")
        assert bob.fetch("1", "(BODY[])")[0] == "OK"  # reads the first one
    finally:
        bob.logout()
    await client.sign_in()
    first, page = await _sent_id(client, 1)
    second, _ = await _sent_id(client, 2)
    async with client.session.get(f"{client.base}/readstatus/{first}") as resp:
        [row] = (await resp.json())["recipients"]
    assert row["address"] == "bob@city.test" and row["read"] and row["delivered_at"]
    async with client.session.post(f"{client.base}/readstatus/{second}/recall",
                                   headers={"X-CSRF-Token": csrf_of(page), "Accept": "application/json"}) as resp:
        assert resp.status == 200 and (await resp.json())["recalled"] is True
    assert _count(web, "bob", "Meetings") == 1
