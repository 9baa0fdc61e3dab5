"""Compose, reply and forward over real HTTP: through delivery's submit(), read by the colleague over IMAP, a copy in Sent."""

from __future__ import annotations

import email
import email.policy
import imaplib
import re

import aiohttp

from .harness import PASSWORD, csrf_of
from .mails import gbk_mail, plain_mail


def _imap(web, user: str) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", web.port, timeout=30)
    c.login(f"{user}@city.test", PASSWORD)
    return c


def _fetch_all(c: imaplib.IMAP4, folder: str) -> list[tuple[bytes, bytes]]:
    typ, _ = c.select(folder)
    assert typ == "OK"
    typ, data = c.fetch("1:*", "(FLAGS BODY.PEEK[])")
    if typ != "OK" or data == [None]:
        return []
    return [(item[0], item[1]) for item in data if isinstance(item, tuple)]


def _mails(web, user: str, folder: str = "INBOX") -> list[tuple[bytes, bytes]]:
    """(FETCH meta, raw message) of every message in one of `user`'s folders, read over IMAP."""
    c = _imap(web, user)
    try:
        return _fetch_all(c, folder)
    finally:
        c.logout()


def _form(token: str, **fields: str) -> aiohttp.FormData:
    f = aiohttp.FormData(quote_fields=False)  # file names as raw UTF-8, as browsers send them (HTML §4.10.21.8)
    f.add_field("csrf", token)
    for k, v in fields.items():
        f.add_field(k, v)
    return f


async def test_compose_with_a_chinese_attachment_reaches_a_colleague_over_imap_and_sent_keeps_a_copy(web, client):
    _, page = await client.sign_in()
    r, page = await client.get("/compose")
    assert r.status == 200 and 'for="to"' in page and 'enctype="multipart/form-data"' in page
    form = _form(csrf_of(page), mode="new", to="Bob <bob@city.test>", cc="", subject="会议纪要 minutes",
                 body="各位好，\n纪要见附件。")
    form.add_field("attachments", "第一条\n".encode(), filename="会议纪要.txt", content_type="text/plain")
    r, page = await client.post("/compose", form)
    assert r.status == 200 and "folder=Sent" in str(r.url)
    [(meta, raw)] = _mails(web, "bob", "INBOX")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "会议纪要 minutes" and msg["From"].addresses[0].addr_spec == "alice@city.test"
    assert "Received:" in raw.decode("utf-8", "replace")  # stamped by submit(), as SMTP submission is
    assert "各位好" in msg.get_body(("plain",)).get_content()
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "会议纪要.txt" and att.get_content() == "第一条\n"
    [(meta, sent)] = _mails(web, "alice", "Sent")
    assert b"\\Seen" in meta and b"Subject:" in sent and b"Received:" not in sent


async def test_reply_prefills_quotes_threads_and_marks_answered(web, client):
    web.deliver("alice", plain_mail("Budget question").replace(b"From: carol@city.test",
                                                                  b"From: Bob <bob@city.test>\r\nMessage-ID: <q1@city.test>"))
    await client.sign_in()
    r, page = await client.get("/compose?mode=reply&folder=INBOX&uid=1")
    assert r.status == 200
    assert 'value="bob@city.test"' in page and 'value="Re: Budget question"' in page and "&gt; hello" in page
    assert 'name="in_reply_to" value="&lt;q1@city.test&gt;"' in page
    r, page = await client.post("/compose", _form(
        csrf_of(page), mode="reply", to="bob@city.test", cc="", subject="Re: Budget question",
        body="Yes.\n\n> hello", in_reply_to="<q1@city.test>", references="", source_folder="INBOX", source_uid="1"))
    assert r.status == 200
    [(_, raw)] = _mails(web, "bob", "INBOX")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["In-Reply-To"] == "<q1@city.test>" and "<q1@city.test>" in msg["References"]
    [(meta, _)] = _mails(web, "alice")
    assert b"\\Answered" in meta


async def test_forward_sends_the_original_along_whole(web, client):
    web.deliver("alice", gbk_mail())
    await client.sign_in()
    r, page = await client.get("/compose?mode=forward&folder=INBOX&uid=1")
    assert 'value="Fwd: 关于第三季度报告的通知"' in page
    r, page = await client.post("/compose", _form(
        csrf_of(page), mode="forward", to="bob@city.test", cc="", subject="Fwd: 关于第三季度报告的通知",
        body="FYI", source_folder="INBOX", source_uid="1"))
    assert r.status == 200
    [(_, raw)] = _mails(web, "bob", "INBOX")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    [inner] = [p for p in msg.walk() if p.get_content_type() == "message/rfc822"]
    original = inner.get_payload()[0]
    assert "wang@district.test" in str(original["From"])
    assert [a.get_filename() for a in original.iter_attachments()] == ["季度报告（第三季度）.pdf"]


async def test_bad_recipients_are_refused_with_the_form_kept_and_nothing_sent(web, client):
    _, page = await client.sign_in()
    token = csrf_of(page)
    for to, expected in (("", "请至少填写一位收件人"), ("not an address", "收件人地址无效"),
                         ("nobody@city.test", "邮件未能发送")):
        r, page = await client.post("/compose", _form(token, mode="new", to=to, cc="", subject="kept subject",
                                                      body="kept body"))
        assert r.status == 400 and expected in page and 'value="kept subject"' in page and "kept body" in page, to
    r, _ = await client.post("/compose", _form("wrong", mode="new", to="bob@city.test", subject="x", body="y"),
                             allow_redirects=False)
    assert r.status == 403
    assert _mails(web, "bob") == [] and _mails(web, "alice", "Sent") == []
    assert re.search(r"alice@city.test", page)
