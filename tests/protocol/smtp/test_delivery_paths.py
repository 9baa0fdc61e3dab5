"""The shared submit path (webmail, bridges), write-time refusals, trace headers, and protocol corner cases."""

from __future__ import annotations

import base64
import email

from delivery.envelope import HEADER_FROM_NOT_ALLOWED
from delivery.submit import Client, Submission
from mailboxes.model import Flag

from .support import PASSWORD, RawClient, client_tls, message, wait_for


async def test_webmail_submits_through_the_same_path(city):
    submit = city.ctx.extras["submit"]
    acct = await city.mb.directory.account("zhang.wei@city.test")
    bare = b"From: zhang.wei@city.test\r\nTo: li.na@city.test\r\nSubject: from the web\r\n\r\nHi.\r\n"
    rcpts = ("li.na@city.test", "nobody@city.test", "x@remote.example", "not an address", "x@[192.0.2.1]")
    out = await submit(Submission("zhang.wei@city.test", rcpts, bare, acct, Client("192.0.2.7", "webmail", "HTTPSA"),
                                  origin="webmail"))
    assert out.accepted and out.delivered == 1 and out.queued == 1
    assert [(r, rep.code, rep.enhanced) for r, rep in out.refused] == [
        ("nobody@city.test", 550, "5.1.1"), ("not an address", 501, "5.1.3"), ("x@[192.0.2.1]", 550, "5.7.1")]
    [stored] = await city.inbox("li.na@city.test")
    assert stored.endswith(bare)
    assert stored.startswith(b"Return-Path: <zhang.wei@city.test>\r\n"  # RFC 5321 §4.4, at final delivery
                             b"Received: from webmail (unknown [192.0.2.7])\r\n\tby mail.city.test with HTTPSA id ")
    head = email.message_from_bytes(stored)
    assert head["Message-ID"].endswith("@mail.city.test>") and head["Date"]  # RFC 6409 §8: added by the MSA
    forged = bare.replace(b"From: zhang.wei@", b"From: li.na@")
    out = await submit(Submission("zhang.wei@city.test", ("li.na@city.test",), forged, acct,
                                  Client("192.0.2.7", "webmail", "HTTPSA"), origin="webmail"))
    assert out.reply == HEADER_FROM_NOT_ALLOWED and len(await city.inbox("li.na@city.test")) == 1


async def test_a_full_mailbox_found_at_write_time_is_retried_locally(city):
    d = city.mb.directory
    await city.add_user("busy@city.test", quota_messages=1)
    await d.add_group("team@city.test", "Team", post_policy="anyone")
    await d.set_group_members("team@city.test", add=["li.na@city.test", "busy@city.test"])
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    for subject in ("one", "two"):
        await c.cmd("MAIL FROM:<a@other.example>")
        assert (await c.cmd("RCPT TO:<team@city.test>"))[0] == 250  # a group: no per-member quota check here
        await c.cmd("DATA")
        code, text = await c.cmd(message(subject, sender="a@other.example") + b".")
        assert code == 250, text
    await c.close()
    assert len(await city.inbox("li.na@city.test")) == 2 and len(await city.inbox("busy@city.test")) == 1
    [entry] = await city.parts.queue.entries()
    assert [r.rcpt for r in entry.recipients] == ["busy@city.test"]  # kept, not bounced
    await d.set_quota("busy@city.test", quota_bytes=0, quota_messages=0)
    await city.parts.queue.retry(entry.queue_id)
    city.parts.worker.poke()
    await wait_for(lambda: _count(city, "busy@city.test", 2), what="the local retry")
    await wait_for(lambda: _queue_empty(city), what="an empty queue")


async def test_a_colleague_reached_on_the_queues_retry_shows_in_the_senders_read_status(city):
    """A copy refused for now (mailbox full) keeps its read-status row, not delivered yet; the retry writes
    the copy with it, so the sender sees it delivered, then read (it used to vanish from the status)."""
    d = city.mb.directory
    await city.add_user("busy@city.test", quota_messages=1)
    await d.add_group("team@city.test", "Team", post_policy="anyone")  # a group: no per-member check at RCPT
    await d.set_group_members("team@city.test", add=["li.na@city.test", "busy@city.test"])
    await city.parts.submitter.deliver_local("busy@city.test", message("already there"))  # busy is full now
    zhang = await d.account("zhang.wei@city.test")
    raw = (b"From: zhang.wei@city.test\r\nTo: team@city.test\r\nSubject: =?utf-8?b?5Lya6K6u?=\r\n"
           b"Message-ID: <retry-track@city.test>\r\n\r\nHi.\r\n")
    out = await city.ctx.extras["submit"](Submission("zhang.wei@city.test", ("team@city.test",), raw, zhang,
                                                     Client("192.0.2.7", "webmail", "HTTPSA"), origin="webmail"))
    assert out.accepted and out.delivered == 1 and out.queued == 1
    rs = city.mb.store.readstatus
    sent_id = await rs.find(zhang, "<retry-track@city.test>")
    copies = {c.address: c for c in (await rs.status(zhang, sent_id)).copies}
    assert set(copies) == {"li.na@city.test", "busy@city.test"}
    assert copies["li.na@city.test"].delivered_at and copies["busy@city.test"].delivered_at is None  # not yet
    [entry] = await city.parts.queue.entries()
    await d.set_quota("busy@city.test", quota_bytes=0, quota_messages=0)
    await city.parts.queue.retry(entry.queue_id)
    city.parts.worker.poke()
    await wait_for(lambda: _count(city, "busy@city.test", 2), what="the local retry")
    await wait_for(lambda: _queue_empty(city), what="an empty queue")
    copies = {c.address: c for c in (await rs.status(zhang, sent_id)).copies}
    assert copies["busy@city.test"].delivered_at is not None and copies["busy@city.test"].first_read_at is None
    busy = await d.account("busy@city.test")
    inbox = await city.mb.store.folder(busy, "INBOX")
    [late] = [m for m in await city.mb.store.messages(inbox.ref) if m.uid == 2]
    await city.mb.store.store_flags(inbox.ref, [late.uid], "add", int(Flag.SEEN))  # busy reads it
    assert (await rs.status(zhang, sent_id)).read_by == ("busy@city.test",)


async def test_a_message_too_big_for_a_member_bounces_to_the_sender(city):
    d = city.mb.directory
    await city.add_user("tiny@city.test", quota_bytes=300)
    await d.add_group("all@city.test", "All", post_policy="domain")
    await d.set_group_members("all@city.test", add=["li.na@city.test", "tiny@city.test"])
    c = await RawClient.connect(city.port("submission"))
    await c.cmd("EHLO pc.city.test")
    await c.starttls(client_tls())
    await c.cmd("EHLO pc.city.test")
    await c.cmd("AUTH PLAIN " + base64.b64encode(b"\0zhang.wei@city.test\0" + PASSWORD.encode()).decode())
    await c.cmd("MAIL FROM:<zhang.wei@city.test>")
    await c.cmd("RCPT TO:<all@city.test>")
    await c.cmd("DATA")
    assert (await c.cmd(message("circular", body="x" * 400 + "\r\n") + b"."))[0] == 250
    await c.close()
    assert len(await city.inbox("li.na@city.test")) == 1 and await city.inbox("tiny@city.test") == []
    [dsn] = await city.inbox("zhang.wei@city.test")
    text = email.message_from_bytes(dsn).as_string()
    assert "Final-Recipient: rfc822; tiny@city.test" in text and "Status: 5.2.2" in text


async def test_forged_authentication_results_are_dropped_and_bad_signatures_reported(city):
    forged = (b"Authentication-Results: mail.city.test; dkim=pass header.d=city.test\r\n"
              b"Authentication-Results: mx.elsewhere.example; spf=pass\r\n"
              b"DKIM-Signature: v=1; a=rsa-sha256; d=other.example; s=x; h=from; bh=AAAA; b=BBBB\r\n")
    body = forged + message("forged", sender="a@other.example")
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    await c.cmd("MAIL FROM:<a@other.example>")
    await c.cmd("RCPT TO:<li.na@city.test>")
    await c.cmd("DATA")
    assert (await c.cmd(body + b"."))[0] == 250
    await c.close()
    [stored] = await city.inbox("li.na@city.test")
    results = email.message_from_bytes(stored).get_all("Authentication-Results")
    assert len(results) == 2 and "mx.elsewhere.example; spf=pass" in results[1]
    assert results[0].startswith("mail.city.test;") and "dkim=permerror" in results[0]
    assert b"dkim=pass header.d=city.test" not in stored


async def test_protocol_corner_cases(city):
    c = await RawClient.connect(city.port("smtp"))
    assert (await c.cmd("MAIL FROM:<a@other.example>"))[:1] == (503,)  # EHLO first
    await c.cmd("EHLO other.example")
    assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 503
    assert (await c.cmd("DATA"))[0] == 503
    assert (await c.cmd("NOOP " + "x" * 3000))[0] == 500  # command line too long; the session goes on
    assert (await c.cmd("VRFY li.na@city.test"))[0] == 252  # never confirms who exists
    assert (await c.cmd("MAIL FROM:<a@other.example> BODY=BINARYMIME"))[0] == 501
    assert (await c.cmd("MAIL FROM:<a@other.example> FOO=BAR"))[0] == 555
    assert (await c.cmd("MAIL FROM:<a@other.example>"))[0] == 250
    assert (await c.cmd("MAIL FROM:<a@other.example>"))[0] == 503  # nested
    assert (await c.cmd("RCPT TO:<李娜@city.test>"))[:1] == (553,)  # non-ASCII without SMTPUTF8
    await c.cmd("RSET")
    assert (await c.cmd("MAIL FROM:<用户@other.example> SMTPUTF8".encode()))[0] == 250
    assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 250
    await c.cmd("DATA")
    assert (await c.cmd(message("utf8", sender="a@other.example").replace(b"Subject: utf8",
                        "Subject: 通知".encode()) + b"."))[0] == 250
    assert (await c.cmd("QUIT"))[0] == 221
    [stored] = await city.inbox("li.na@city.test")
    assert b"with UTF8SMTP id" in stored and "Subject: 通知".encode() in stored


async def test_auth_mechanisms_and_their_edge_cases(city):
    c = await RawClient.connect(city.port("submission"))
    await c.cmd("EHLO pc.city.test")
    await c.starttls(client_tls())
    await c.cmd("EHLO pc.city.test")
    assert (await c.cmd("AUTH CRAM-MD5"))[:1] == (504,)
    assert (await c.cmd("AUTH PLAIN"))[0] == 334  # no initial response: the challenge
    assert (await c.cmd("*"))[0] == 501  # client cancels (RFC 4954 §4)
    assert (await c.cmd("AUTH PLAIN not-base64!"))[0] == 501
    proxy = base64.b64encode(b"li.na@city.test\0zhang.wei@city.test\0" + PASSWORD.encode()).decode()
    assert (await c.cmd(f"AUTH PLAIN {proxy}"))[0] == 535  # no authorising as someone else
    user = base64.b64encode(b"zhang.wei@city.test").decode()
    assert (await c.cmd(f"AUTH LOGIN {user}"))[0] == 334
    assert (await c.cmd(base64.b64encode(PASSWORD.encode()).decode()))[0] == 235
    assert (await c.cmd(f"AUTH LOGIN {user}"))[0] == 503  # already authenticated
    await c.close()


async def _count(inst, address, n):
    return len(await inst.inbox(address)) >= n


async def _queue_empty(inst):
    return await inst.parts.queue.pending_count() == 0
