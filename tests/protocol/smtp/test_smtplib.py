"""The SMTP server driven by Python's smtplib over loopback: listeners, AUTH, door policy, delivery, the log."""

from __future__ import annotations

import asyncio
import base64
import logging
import smtplib

import pytest

from delivery import dkim

from .support import PASSWORD, RawClient, client_tls, make_config, message, start_instance


def smtp_session(port: int, *, tls: bool = False, login: str | None = None, password: str = PASSWORD,
                 implicit: bool = False) -> smtplib.SMTP:
    s = smtplib.SMTP_SSL("127.0.0.1", port, context=client_tls()) if implicit else smtplib.SMTP("127.0.0.1", port)
    s.ehlo("client.city.test")
    if tls:
        s.starttls(context=client_tls())
        s.ehlo("client.city.test")
    if login:
        s.login(login, password)
    return s


async def in_thread(fn, *args, **kw):
    return await asyncio.to_thread(fn, *args, **kw)


async def test_ehlo_advertises_extensions_and_auth_only_after_tls(city):
    def run():
        s = smtp_session(city.port("submission"))
        before = dict(s.esmtp_features)
        s.starttls(context=client_tls())
        s.ehlo("client.city.test")
        after = dict(s.esmtp_features)
        s.quit()
        return before, after
    before, after = await in_thread(run)
    for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "starttls"):
        assert ext in before, ext
    assert "auth" not in before  # never offered in the clear
    assert after["auth"].split() == ["PLAIN", "LOGIN"] and "starttls" not in after
    assert before["size"] == str(city.ctx.config.get("limits", "max_message_size"))


async def test_inbound_message_is_stored_once_with_trace_headers_before_the_original_bytes(city):
    original = message("inbound", sender="wang@district.test", to="li.na@city.test")
    def run():
        with smtp_session(city.port("smtp")) as s:
            return s.sendmail("wang@district.test", ["li.na@city.test", "LI.NA@city.test"], original)
    assert await in_thread(run) == {}
    [stored] = await city.inbox("li.na@city.test")
    assert stored.endswith(original)
    head = stored[: -len(original)].decode()
    assert head.startswith("Return-Path: <wang@district.test>\r\nReceived: from client.city.test (unknown [127.0.0.1])")
    # The two RCPTs name one mailbox: one recipient, so the trace names it (RFC 5321 §4.4 "for").
    assert "by mail.city.test with ESMTP id " in head and "for <li.na@city.test>" in head
    assert "Authentication-Results: mail.city.test;\r\n\tdkim=none" in head
    assert await city.parts.queue.entries() == []


async def test_submission_with_starttls_and_auth_delivers_locally_and_queues_remote(city):
    await city.parts.keys.generate("city.test", "s1", 1024)
    original = message("out", sender="zhang.wei@city.test", to="li.na@city.test, x@remote.example")
    def run():
        with smtp_session(city.port("submission"), tls=True, login="zhang.wei@city.test") as s:
            s.mail("zhang.wei@city.test")
            s.rcpt("li.na@city.test")
            s.rcpt("x@remote.example")
            return s.data(original)
    code, text = await in_thread(run)
    assert code == 250 and text.decode().startswith("2.0.0 OK queued as ")
    qid = text.decode().rsplit(" ", 1)[1]
    [stored] = await city.inbox("li.na@city.test")
    assert stored.endswith(original) and f"id {qid}" in stored.decode() and "ESMTPSA" in stored.decode()
    [entry] = await city.parts.queue.entries(qid)
    assert [r.rcpt for r in entry.recipients] == ["x@remote.example"] and entry.submitter == "zhang.wei@city.test"
    queued = await city.parts.queue.data_of(qid)
    assert queued.startswith(b"DKIM-Signature:") and queued.endswith(original)
    result = dkim.verify(queued, await city.parts.keys.trusted())
    assert (result.result, result.domain) == ("pass", "city.test")


async def test_submission_requires_auth_and_auth_requires_tls(city):
    c = await RawClient.connect(city.port("submission"))
    assert (await c.cmd("EHLO client.city.test"))[0] == 250
    assert await c.cmd("MAIL FROM:<zhang.wei@city.test>") == (530, "5.7.0 Authentication required")
    code, text = await c.cmd("AUTH PLAIN " + base64.b64encode(b"\0zhang.wei@city.test\0" + PASSWORD.encode()).decode())
    assert (code, text.split()[0]) == (538, "5.7.11")
    await c.starttls(client_tls())
    assert (await c.cmd("EHLO client.city.test"))[0] == 250
    assert await c.cmd("MAIL FROM:<zhang.wei@city.test>") == (530, "5.7.0 Authentication required")
    code, _ = await c.cmd("AUTH PLAIN " + base64.b64encode(b"\0zhang.wei@city.test\0" + PASSWORD.encode()).decode())
    assert code == 235
    assert (await c.cmd("MAIL FROM:<zhang.wei@city.test>"))[0] == 250
    await c.close()


async def test_submissions_implicit_tls_with_auth_login(city):
    def run():
        with smtp_session(city.port("submissions"), implicit=True) as s:
            assert "starttls" not in s.esmtp_features
            s.login("li.na@city.test", PASSWORD)  # smtplib picks PLAIN; LOGIN is driven by hand below
            return s.sendmail("li.na@city.test", ["zhang.wei@city.test"],
                              message("tls", sender="li.na@city.test", to="zhang.wei@city.test"))
    assert await in_thread(run) == {}
    c = await RawClient.connect(city.port("submissions"), ssl_context=client_tls())
    await c.cmd("EHLO client.city.test")
    assert (await c.cmd("AUTH LOGIN"))[0] == 334
    assert (await c.cmd(base64.b64encode(b"li.na@city.test").decode()))[0] == 334
    assert (await c.cmd(base64.b64encode(PASSWORD.encode()).decode()))[0] == 235
    await c.close()
    [stored] = await city.inbox("zhang.wei@city.test")
    assert b"with ESMTPSA" in stored


async def test_plaintext_auth_on_loopback_only_when_configured(tmp_path, storage_url):
    cfg = make_config(tmp_path / "d", storage_url, tls={"allow_plaintext_auth_on_loopback": True})
    inst = await start_instance(cfg)
    try:
        await inst.add_user("zhang.wei@city.test")
        def run():
            with smtp_session(inst.port("submission"), login="zhang.wei@city.test") as s:
                return s.esmtp_features["auth"]
        assert (await in_thread(run)).split() == ["PLAIN", "LOGIN"]
    finally:
        await inst.stop()


async def test_sender_must_be_own_address_alias_or_group(city):
    await city.mb.directory.add_alias("office@city.test", "zhang.wei@city.test")
    c = await RawClient.connect(city.port("submission"))
    await c.cmd("EHLO client.city.test")
    await c.starttls(client_tls())
    await c.cmd("EHLO client.city.test")
    await c.cmd("AUTH PLAIN " + base64.b64encode(b"\0zhang.wei@city.test\0" + PASSWORD.encode()).decode())
    assert (await c.cmd("MAIL FROM:<li.na@city.test>"))[:1] == (553,)
    assert (await c.cmd("MAIL FROM:<li.na@city.test>"))[1].startswith("5.7.1")
    assert (await c.cmd("MAIL FROM:<office@city.test>"))[0] == 250
    assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 250
    assert (await c.cmd("DATA"))[0] == 354
    forged = message("forged", sender="li.na@city.test").replace(b"\r\n.", b"\r\n..")
    code, text = await c.cmd(forged + b".")
    assert (code, text.split()[0]) == (550, "5.7.1")  # From: header is someone else
    assert (await c.cmd("MAIL FROM:<office@city.test>"))[0] == 250
    await c.cmd("RCPT TO:<li.na@city.test>")
    await c.cmd("DATA")
    assert (await c.cmd(message("alias", sender="office@city.test") + b"."))[0] == 250
    await c.close()
    assert len(await city.inbox("li.na@city.test")) == 1


async def test_unauthenticated_client_cannot_claim_a_local_sender(city):
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    code, text = await c.cmd("MAIL FROM:<zhang.wei@city.test>")
    assert (code, text.split()[0]) == (553, "5.7.1")
    assert (await c.cmd("MAIL FROM:<>"))[0] == 250  # bounces are fine
    await c.close()


async def test_auth_failures_are_throttled_and_never_logged_with_the_password(tmp_path, storage_url, caplog):
    cfg = make_config(tmp_path / "d", storage_url, limits={"auth_failures": 3})
    inst = await start_instance(cfg)
    caplog.set_level(logging.INFO)
    try:
        await inst.add_user("zhang.wei@city.test")
        c = await RawClient.connect(inst.port("submission"))
        await c.cmd("EHLO client.city.test")
        await c.starttls(client_tls())
        await c.cmd("EHLO client.city.test")
        bad = base64.b64encode(b"\0zhang.wei@city.test\0wrong-secret-123").decode()
        codes = [(await c.cmd(f"AUTH PLAIN {bad}"))[0] for _ in range(3)]
        assert codes == [535, 535, 535]
        assert await c.cmd(f"AUTH PLAIN {bad}") == (454, "4.7.0 Too many failed logins, try again later")
        good = base64.b64encode(b"\0zhang.wei@city.test\0" + PASSWORD.encode()).decode()
        assert (await c.cmd(f"AUTH PLAIN {good}"))[0] == 454  # throttled even with the right password
        await c.close()
    finally:
        await inst.stop()
    assert "auth failed protocol=smtp user=zhang.wei@city.test ip=127.0.0.1" in caplog.text
    assert "wrong-secret-123" not in caplog.text and PASSWORD not in caplog.text and bad not in caplog.text


async def test_size_limit_at_mail_and_after_data(tmp_path, storage_url):
    cfg = make_config(tmp_path / "d", storage_url, limits={"max_message_size": 4000})
    inst = await start_instance(cfg)
    try:
        await inst.add_user("li.na@city.test")
        c = await RawClient.connect(inst.port("smtp"))
        await c.cmd("EHLO other.example")
        assert await c.cmd("MAIL FROM:<a@other.example> SIZE=4001") == (552, "5.3.4 Message too big for system")
        assert (await c.cmd("MAIL FROM:<a@other.example> SIZE=100"))[0] == 250  # the client understated it
        assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 250
        assert (await c.cmd("DATA"))[0] == 354
        big = message("big", sender="a@other.example", body="x" * 70 + "\r\n") + (b"y" * 900 + b"\r\n") * 5
        assert await c.cmd(big + b".") == (552, "5.3.4 Message too big for system")
        assert (await c.cmd("MAIL FROM:<a@other.example>"))[0] == 250  # the session goes on
        await c.cmd("RCPT TO:<li.na@city.test>")
        await c.cmd("DATA")
        assert (await c.cmd(message("small", sender="a@other.example") + b"."))[0] == 250
        await c.close()
        assert len(await inst.inbox("li.na@city.test")) == 1
    finally:
        await inst.stop()


async def test_quota_is_checked_at_rcpt_and_again_at_write(city):
    await city.add_user("small@city.test", quota_bytes=3000)
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    await c.cmd("MAIL FROM:<a@other.example> SIZE=5000")
    assert await c.cmd("RCPT TO:<small@city.test>") == (552, "5.2.2 Mailbox full")  # can never fit
    await c.cmd("RSET")
    body = "z" * 1900 + "\r\n"
    await c.cmd("MAIL FROM:<a@other.example> SIZE=2100")
    assert (await c.cmd("RCPT TO:<small@city.test>"))[0] == 250
    await c.cmd("DATA")
    assert (await c.cmd(message("first", sender="a@other.example", body=body) + b"."))[0] == 250
    await c.cmd("MAIL FROM:<a@other.example> SIZE=2100")
    assert await c.cmd("RCPT TO:<small@city.test>") == (452, "4.2.2 Mailbox full, try again later")
    await c.cmd("RSET")
    await c.cmd("MAIL FROM:<a@other.example>")  # no SIZE: RCPT passes, the store refuses at write
    assert (await c.cmd("RCPT TO:<small@city.test>"))[0] == 250
    await c.cmd("DATA")
    assert await c.cmd(message("second", sender="a@other.example", body=body) + b".") == \
        (452, "4.2.2 Mailbox full, try again later")
    await c.close()
    assert len(await city.inbox("small@city.test")) == 1
    assert await city.parts.queue.entries() == []  # refused, not queued: the client keeps it


async def test_aliases_and_groups_expand_and_each_account_gets_one_copy(city):
    d = city.mb.directory
    await city.add_user("wang@city.test")
    await d.add_alias("director@city.test", "li.na@city.test")
    await d.add_group("office@city.test", "Office", post_policy="anyone")
    await d.set_group_members("office@city.test", add=["li.na@city.test", "wang@city.test", "director@city.test"])
    def run():
        with smtp_session(city.port("smtp")) as s:
            return s.sendmail("a@other.example", ["li.na@city.test", "director@city.test", "office@city.test"],
                              message("expand", sender="a@other.example"))
    assert await in_thread(run) == {}
    assert len(await city.inbox("li.na@city.test")) == 1
    assert len(await city.inbox("wang@city.test")) == 1
    assert await city.inbox("zhang.wei@city.test") == []


async def test_group_posting_policy_is_enforced_at_rcpt(city):
    d = city.mb.directory
    await d.add_group("board@city.test", "Board", post_policy="members")
    await d.set_group_members("board@city.test", add=["li.na@city.test"])
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    await c.cmd("MAIL FROM:<outsider@other.example>")
    assert await c.cmd("RCPT TO:<board@city.test>") == (550, "5.7.2 Not allowed to post to this list")
    await c.close()
    def run():
        with smtp_session(city.port("submission"), tls=True, login="li.na@city.test") as s:
            return s.sendmail("li.na@city.test", ["board@city.test"], message("board", sender="li.na@city.test"))
    assert await in_thread(run) == {}
    assert len(await city.inbox("li.na@city.test")) == 1


async def test_refusals_are_per_recipient(city):
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    await c.cmd("MAIL FROM:<a@other.example>")
    assert await c.cmd("RCPT TO:<nobody@city.test>") == (550, "5.1.1 Mailbox unavailable")
    assert await c.cmd("RCPT TO:<x@remote.example>") == (554, "5.7.1 Relaying denied")
    assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 250
    assert (await c.cmd("RCPT TO:<postmaster>"))[0] == 550  # no postmaster account or alias yet
    await c.cmd("DATA")
    assert (await c.cmd(message("partial", sender="a@other.example") + b"."))[0] == 250
    await c.close()
    assert len(await city.inbox("li.na@city.test")) == 1
    assert await city.parts.queue.entries() == []


async def test_pipelined_commands_and_an_empty_message(city):
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    body = message("piped", sender="a@other.example")
    c.writer.write(b"MAIL FROM:<a@other.example>\r\nRCPT TO:<li.na@city.test>\r\nRCPT TO:<nobody@city.test>\r\n"
                   b"DATA\r\n")
    replies = [await c.read_reply() for _ in range(4)]
    assert [r[0] for r in replies] == [250, 250, 550, 354]
    c.writer.write(b".leading dot line\r\n" + body + b".\r\nMAIL FROM:<>\r\nRCPT TO:<li.na@city.test>\r\nDATA\r\n")
    assert [(await c.read_reply())[0] for _ in range(4)] == [250, 250, 250, 354]
    assert (await c.cmd(b"."))[0] == 250  # an empty message is still a message
    await c.close()
    first, second = await city.inbox("li.na@city.test")
    assert first.endswith(b"leading dot line\r\n" + body) and b"\r\n.leading" not in first
    assert second.endswith(b"dkim=none\r\n")


async def test_one_log_line_per_transaction_with_the_queue_id(city, caplog):
    caplog.set_level(logging.INFO, logger="postroom.smtp")
    def run():
        with smtp_session(city.port("smtp")) as s:
            s.mail("a@other.example")
            s.rcpt("li.na@city.test")
            return s.data(message("logged", sender="a@other.example"))
    code, text = await in_thread(run)
    qid = text.decode().rsplit(" ", 1)[1]
    lines = [r.getMessage() for r in caplog.records if r.name == "postroom.smtp" and "queue_id=" in r.getMessage()]
    assert len(lines) == 1
    assert f"queue_id={qid}" in lines[0] and "from=<a@other.example>" in lines[0] and "to=<li.na@city.test>" in lines[0]
    assert "result=250 2.0.0" in lines[0] and "delivered=1" in lines[0]


async def test_drain_lets_a_transaction_in_flight_finish(city):
    port = city.port("smtp")
    c = await RawClient.connect(port)
    idle = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    await c.cmd("MAIL FROM:<a@other.example>")
    await c.cmd("RCPT TO:<li.na@city.test>")
    assert (await c.cmd("DATA"))[0] == 354
    c.writer.write(message("draining", sender="a@other.example")[:40])
    closing = asyncio.create_task(city.smtp.close())
    assert await idle.read_reply() == (421, "4.3.2 Service shutting down, try again later")
    c.writer.write(message("draining", sender="a@other.example")[40:] + b".\r\n")
    assert (await c.read_reply())[0] == 250
    await asyncio.wait_for(closing, 10)
    assert len(await city.inbox("li.na@city.test")) == 1
    with pytest.raises(OSError):
        await RawClient.connect(port)


async def test_recipient_limit(tmp_path, storage_url):
    inst = await start_instance(make_config(tmp_path / "d", storage_url, limits={"max_recipients": 2}))
    try:
        for u in ("a", "b", "c"):
            await inst.add_user(f"{u}@city.test")
        c = await RawClient.connect(inst.port("smtp"))
        await c.cmd("EHLO other.example")
        await c.cmd("MAIL FROM:<x@other.example>")
        assert [(await c.cmd(f"RCPT TO:<{u}@city.test>"))[0] for u in "ab"] == [250, 250]
        assert await c.cmd("RCPT TO:<c@city.test>") == (452, "4.5.3 Too many recipients")  # RFC 5321 §4.5.3.1.10
        await c.cmd("DATA")
        assert (await c.cmd(message("two", sender="x@other.example") + b"."))[0] == 250
        await c.close()
        assert [len(await inst.inbox(f"{u}@city.test")) for u in "abc"] == [1, 1, 0]
    finally:
        await inst.stop()
