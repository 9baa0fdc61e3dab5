"""Drafts over real HTTP: saved into Drafts as \\Draft (seen by imaplib), continued, sent and then gone; forward threading."""

from __future__ import annotations

import email
import email.policy
import re

from .harness import Browser, csrf_of
from .mails import plain_mail
from .test_compose import _form, _imap, _mails


def _draft_uid(url) -> str:
    m = re.search(r"draft=(\d+)", str(url))
    assert m, url
    return m.group(1)


async def test_a_draft_is_saved_continued_sent_and_then_gone(web, client):
    _, page = await client.sign_in()
    token = csrf_of(page)
    form = _form(token, mode="new", to="bob@city.test", cc="carol@city.test", subject="周报 draft",
                 body="第一稿", in_reply_to="<q1@city.test>", references="<q0@city.test>")
    form.add_field("attachments", "附件内容".encode(), filename="周报（草稿）.txt", content_type="text/plain")
    r, page = await client.post("/compose/draft", form)
    assert r.status == 200 and "/compose?draft=" in str(r.url)
    assert 'id="draft-saved"' in page and 'value="bob@city.test"' in page and 'value="carol@city.test"' in page
    assert 'value="周报 draft"' in page and "第一稿" in page and "周报（草稿）.txt" in page
    uid = _draft_uid(r.url)
    assert f'name="draft_uid" value="{uid}"' in page
    [(meta, raw)] = _mails(web, "alice", "Drafts")  # what an IMAP client sees
    assert b"\\Draft" in meta and b"\\Seen" in meta
    saved = email.message_from_bytes(raw, policy=email.policy.default)
    assert saved["Subject"] == "周报 draft" and saved["In-Reply-To"] == "<q1@city.test>"
    assert [a.get_filename() for a in saved.iter_attachments()] == ["周报（草稿）.txt"]

    # continue it after a reload: a second save replaces the first, the attachment stays
    r, page = await client.get(f"/compose?draft={uid}")
    assert r.status == 200 and "第一稿" in page and "周报（草稿）.txt" in page
    r, page = await client.post("/compose/draft", _form(
        csrf_of(page), mode="new", to="bob@city.test", cc="carol@city.test", subject="周报 draft", body="第二稿",
        in_reply_to="<q1@city.test>", references="<q0@city.test>", draft_uid=uid))
    assert r.status == 200 and "第二稿" in page
    uid2 = _draft_uid(r.url)
    assert uid2 != uid
    [(_, raw)] = _mails(web, "alice", "Drafts")
    assert "第二稿" in email.message_from_bytes(raw, policy=email.policy.default).get_body(("plain",)).get_content()
    r, _ = await client.get(f"/compose?draft={uid}")
    assert r.status == 404  # the first draft is gone

    # send it: the colleague gets body, threading and the draft's attachment; Drafts is empty; Sent keeps a copy
    r, page = await client.post("/compose", _form(
        csrf_of(page), mode="new", to="bob@city.test", cc="carol@city.test", subject="周报 draft", body="定稿",
        in_reply_to="<q1@city.test>", references="<q0@city.test>", draft_uid=uid2))
    assert r.status == 200 and "folder=Sent" in str(r.url)
    [(_, raw)] = _mails(web, "bob", "INBOX")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_body(("plain",)).get_content().strip() == "定稿"
    assert msg["In-Reply-To"] == "<q1@city.test>" and msg["References"] == "<q0@city.test> <q1@city.test>"
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "周报（草稿）.txt" and att.get_content() == "附件内容"
    assert _mails(web, "alice", "Drafts") == [] and len(_mails(web, "alice", "Sent")) == 1


async def test_a_draft_needs_no_recipient_and_drafts_is_created_when_missing(web, client):
    c = _imap(web, "alice")
    try:
        assert c.delete("Drafts")[0] == "OK"
    finally:
        c.logout()
    _, page = await client.sign_in()
    r, page = await client.post("/compose/draft", _form(csrf_of(page), mode="new", to="", cc="", subject="idea",
                                                        body="later"))
    assert r.status == 200 and "later" in page
    c = _imap(web, "alice")
    try:
        typ, lines = c.list()
        assert any(b"\\Drafts" in line and b"Drafts" in line for line in lines), lines  # RFC 6154 special use
    finally:
        c.logout()
    [(meta, raw)] = _mails(web, "alice", "Drafts")
    assert b"\\Draft" in meta and b"Subject: idea" in raw


async def test_another_account_cannot_open_send_or_replace_a_draft(web, client):
    _, page = await client.sign_in()
    r, page = await client.post("/compose/draft", _form(csrf_of(page), mode="new", to="carol@city.test", cc="",
                                                        subject="private", body="secret plan"))
    uid = _draft_uid(r.url)
    bob = Browser(web.url)
    try:
        _, page = await bob.sign_in("bob@city.test")
        token = csrf_of(page)
        r, page = await bob.get(f"/compose?draft={uid}")
        assert r.status == 404 and "secret plan" not in page
        r, _ = await bob.post("/compose", _form(token, mode="new", to="bob@city.test", cc="", subject="x",
                                                body="y", draft_uid=uid))
        assert r.status == 404
        r, _ = await bob.post("/compose/draft", _form(token, mode="new", to="", cc="", subject="x", body="y",
                                                      draft_uid=uid))
        assert r.status == 404
    finally:
        await bob.close()
    r, _ = await client.post("/compose/draft", _form("wrong", mode="new", to="", cc="", subject="x", body="y"),
                             allow_redirects=False)
    assert r.status == 403  # CSRF
    [(_, raw)] = _mails(web, "alice", "Drafts")
    assert b"secret plan" in raw and _mails(web, "bob", "Drafts") == [] and _mails(web, "bob", "INBOX") == []


async def test_forward_keeps_the_thread_in_references(web, client):
    web.deliver("alice", plain_mail("Plan").replace(b"From: carol@city.test",
                                                    b"From: carol@city.test\r\nMessage-ID: <p1@city.test>"))
    await client.sign_in()
    r, page = await client.get("/compose?mode=forward&folder=INBOX&uid=1")
    assert 'name="references" value="&lt;p1@city.test&gt;"' in page
    r, page = await client.post("/compose", _form(
        csrf_of(page), mode="forward", to="bob@city.test", cc="", subject="Fwd: Plan", body="FYI",
        in_reply_to="", references="<p1@city.test>", source_folder="INBOX", source_uid="1"))
    assert r.status == 200
    [(_, raw)] = _mails(web, "bob", "INBOX")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["References"] == "<p1@city.test>" and msg["In-Reply-To"] is None


async def test_an_empty_file_input_as_browsers_post_it_is_no_attachment(web, client):
    """Chromium posts an unused <input type=file> as a part with filename="" (aiohttp reads it as bytes, not a file)."""
    _, page = await client.sign_in()
    form = _form(csrf_of(page), mode="new", to="bob@city.test", cc="", subject="no file", body="just text")
    form.add_field("attachments", b"", filename="", content_type="application/octet-stream")
    r, _ = await client.post("/compose", form)
    assert r.status == 200 and "folder=Sent" in str(r.url)
    [(_, raw)] = _mails(web, "bob", "INBOX")
    assert list(email.message_from_bytes(raw, policy=email.policy.default).iter_attachments()) == []


async def test_bcc_is_delivered_kept_in_the_draft_and_absent_from_the_sent_message(web, client):
    await web.loop_run(web.add_account("carol"))
    await client.sign_in()
    _, page = await client.get("/compose")
    assert 'id="bcc" name="bcc"' in page and page.count('data-complete="addresses"') == 3
    r, page = await client.post("/compose/draft", _form(csrf_of(page), mode="new", to="bob@city.test", cc="",
                                                        bcc="carol@city.test", subject="hidden", body="b"))
    assert r.status == 200 and 'id="bcc" name="bcc" type="text" autocomplete="off" data-complete="addresses" ' \
        'value="carol@city.test"' in page
    r, page = await client.post("/compose", _form(csrf_of(page), mode="new", to="bob@city.test", cc="",
                                                  bcc="carol@city.test", subject="hidden", body="b",
                                                  draft_uid=_draft_uid(r.url)))
    assert r.status == 200 and "folder=Sent" in str(r.url)
    [(_, to_bob)] = _mails(web, "bob")
    [(_, to_carol)] = _mails(web, "carol")
    assert b"carol@city.test" not in to_bob and b"Bcc" not in to_bob and b"Subject: hidden" in to_carol


async def test_reply_all_addresses_everyone_but_me_and_threads(web, client):
    web.deliver("alice", plain_mail("Team", to="alice@city.test, bob@city.test").replace(
        b"From: carol@city.test",
        b"From: carol@city.test\r\nCc: Dave <dave@city.test>, ALICE@city.test"
        b"\r\nMessage-ID: <t1@city.test>\r\nReferences: <t0@city.test>"))
    await client.sign_in()
    r, page = await client.get("/compose?mode=replyall&folder=INBOX&uid=1")
    assert r.status == 200
    assert re.search(r'id="to" [^>]*value="carol@city.test, bob@city.test"', page), page
    assert re.search(r'id="cc" [^>]*value="dave@city.test"', page)
    assert 'name="in_reply_to" value="&lt;t1@city.test&gt;"' in page
    assert 'name="references" value="&lt;t0@city.test&gt;"' in page
    r, page = await client.post("/compose", _form(
        csrf_of(page), mode="replyall", to="bob@city.test", cc="", subject="Re: Team", body="ok",
        in_reply_to="<t1@city.test>", references="<t0@city.test>", source_folder="INBOX", source_uid="1"))
    assert r.status == 200
    [(_, raw)] = _mails(web, "bob")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["In-Reply-To"] == "<t1@city.test>" and msg["References"] == "<t0@city.test> <t1@city.test>"
