"""Compose defects, over real HTTP and IMAP: a forward saved as a draft, a reply continued from Drafts, a failed Sent copy."""

from __future__ import annotations

import email
import email.policy
import logging

from .harness import csrf_of
from .mails import ATTACHMENT, ATTACHMENT_DATA, gbk_mail, plain_mail
from .test_compose import _form, _mails
from .test_drafts import _draft_uid


async def test_a_forward_saved_as_a_draft_keeps_the_original_and_sends_it_once(web, client):
    web.deliver("alice", gbk_mail())
    await client.sign_in()
    r, page = await client.get("/compose?mode=forward&folder=INBOX&uid=1")
    r, page = await client.post("/compose/draft", _form(
        csrf_of(page), mode="forward", to="", subject="Fwd: 关于第三季度报告的通知", body="请看",
        source_folder="INBOX", source_uid="1"))
    assert r.status == 200
    uid = _draft_uid(r.url)
    [(_, raw)] = _mails(web, "alice", "Drafts")  # the draft as an IMAP client sees it carries the original
    draft = email.message_from_bytes(raw, policy=email.policy.default)
    assert [p.get_content_type() for p in draft.iter_attachments()] == ["message/rfc822"]

    r, page = await client.get(f"/compose?draft={uid}")  # continued later: still a forward, no second copy
    assert r.status == 200 and "关于第三季度报告的通知.eml" in page
    r, page = await client.post("/compose", _form(
        csrf_of(page), mode="forward", to="bob@city.test", subject="Fwd: 关于第三季度报告的通知", body="请看",
        draft_uid=uid))
    assert r.status == 200 and "folder=Sent" in str(r.url)
    [(_, raw)] = _mails(web, "bob")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    [inner] = [p for p in msg.walk() if p.get_content_type() == "message/rfc822"]
    original = inner.get_payload()[0]
    assert "wang@district.test" in str(original["From"]) and original["Message-ID"] == "<gbk-1@city.test>"
    [att] = list(original.iter_attachments())
    assert att.get_filename() == ATTACHMENT and att.get_payload(decode=True) == ATTACHMENT_DATA
    assert b"X-Postroom-Draft-Source" not in raw and _mails(web, "alice", "Drafts") == []


async def test_a_continued_reply_draft_still_marks_the_original_answered(web, client):
    web.deliver("alice", plain_mail("Budget question").replace(
        b"From: carol@city.test", b"From: Bob <bob@city.test>\r\nMessage-ID: <q1@city.test>"))
    await client.sign_in()
    r, page = await client.get("/compose?mode=reply&folder=INBOX&uid=1")
    r, page = await client.post("/compose/draft", _form(
        csrf_of(page), mode="reply", to="bob@city.test", subject="Re: Budget question", body="Draft.",
        in_reply_to="<q1@city.test>", source_folder="INBOX", source_uid="1"))
    uid = _draft_uid(r.url)
    r, page = await client.get(f"/compose?draft={uid}")  # as from the Drafts folder, some time later
    assert r.status == 200 and 'name="source_uid" value="1"' in page and 'name="mode" value="reply"' in page
    [(meta, _)] = _mails(web, "alice")
    assert b"\\Answered" not in meta
    r, page = await client.post("/compose", _form(
        csrf_of(page), mode="reply", to="bob@city.test", subject="Re: Budget question", body="Final.",
        in_reply_to="<q1@city.test>", source_folder="INBOX", source_uid="1", draft_uid=uid))
    assert r.status == 200 and "folder=Sent" in str(r.url)
    [(meta, _)] = _mails(web, "alice")  # what another client sees: the original is answered
    assert b"\\Answered" in meta
    [(_, raw)] = _mails(web, "bob")
    assert b"X-Postroom-Draft-Source" not in raw


async def test_a_failed_sent_copy_is_logged_and_the_user_told_the_mail_went(web, client, caplog):
    web.run(web.add_account("dora", quota_messages=1))
    web.deliver("dora", plain_mail("fills the quota"))
    _, page = await client.sign_in("dora@city.test")
    with caplog.at_level(logging.ERROR, logger="postroom.webmail.compose"):
        r, page = await client.post("/compose", _form(csrf_of(page), mode="new", to="bob@city.test",
                                                      subject="over quota", body="x"))
    assert r.status == 200 and "copy_failed=1" in str(r.url)
    assert 'id="sent-copy-failed"' in page and "邮件已发出，但未能在“已发送”中保存副本" in page
    assert len(_mails(web, "bob")) == 1 and _mails(web, "dora", "Sent") == []
    assert any("could not be stored" in rec.getMessage() and rec.exc_info for rec in caplog.records)


async def test_a_continued_reply_draft_is_sent_when_its_original_has_gone(web, client):
    web.deliver("alice", plain_mail("Gone soon"))
    _, page = await client.sign_in()
    r, page = await client.post("/compose/draft", _form(
        csrf_of(page), mode="reply", to="bob@city.test", subject="Re: Gone soon", body="Draft.",
        source_folder="INBOX", source_uid="1"))
    uid = _draft_uid(r.url)
    web.run(_expunge_inbox(web))
    r, page = await client.get(f"/compose?draft={uid}")
    r, page = await client.post("/compose", _form(
        csrf_of(page), mode="reply", to="bob@city.test", subject="Re: Gone soon", body="Final.",
        source_folder="INBOX", source_uid="1", draft_uid=uid))
    assert r.status == 200 and "folder=Sent" in str(r.url) and len(_mails(web, "bob")) == 1


async def _expunge_inbox(web):
    store = web.mb.store
    inbox = await store.folder(web.accounts["alice"], "INBOX")
    await store.expunge(inbox.ref, [1], deleted_only=False)
