"""Issue 7 points 3 and 10 over real SMTP clients: one header reader for policy, signing and ENVELOPE; trace and trust headers."""

from __future__ import annotations

import email
import smtplib

import pytest

from delivery import dkim
from delivery.submit import header_from_domain
from mailboxes.headers import originator
from mailboxes.mime import parse_message

from .support import RawClient, message
from .test_smtplib import in_thread, smtp_session

SPOOFED = (b"From : li.na@city.test\r\nFrom: zhang.wei@city.test\r\nTo: li.na@city.test\r\n"
           b"Subject: spoof\r\n\r\nHello.\r\n")


def _submit(port: int, data: bytes, *, rcpts=("li.na@city.test",)) -> tuple[int, bytes]:
    with smtp_session(port, tls=True, login="zhang.wei@city.test") as s:
        s.mail("zhang.wei@city.test")
        for r in rcpts:
            s.rcpt(r)
        try:
            return s.data(data)
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error


@pytest.mark.parametrize("data", [
    SPOOFED,  # issue 7 point 3 as reported: a space before the colon
    b"From: zhang.wei@city.test\r\nFROM\t: li.na@city.test\r\nSubject: s\r\n\r\nx\r\n",
    b"Subject: s\rFrom: li.na@city.test\r\nFrom: zhang.wei@city.test\r\n\r\nx\r\n",  # bare CR splits a line
    b"From: zhang.wei@city.test\r\nnot a header\r\nFrom: li.na@city.test\r\n\r\nx\r\n",
])
async def test_submission_with_two_from_fields_in_any_spelling_is_refused(city, data):
    code, text = await in_thread(_submit, city.port("submission"), data)
    assert (code, text.decode()) == (550, "5.7.1 More than one From header field")
    assert await city.inbox("li.na@city.test") == []


@pytest.mark.parametrize(("data", "expected"), [
    (b"From: <zhang.wei@city.test> li.na@city.test\r\nSubject: s\r\n\r\nx\r\n", "5.6.0 From header field cannot be parsed"),
    (b"From: \"open <zhang.wei@city.test>\r\n\r\nx\r\n", "5.6.0 From header field cannot be parsed"),
    (b"Subject: none\r\n\r\nx\r\n", "5.6.0 No From header field"),
    (b"From: zhang.wei@city.test\r\nSender: zhang.wei@city.test\r\nSender : li.na@city.test\r\n\r\nx\r\n",
     "5.7.1 More than one Sender header field"),
    (b"From: zhang.wei@city.test\r\nSender: li.na@city.test\r\n\r\nx\r\n", "5.7.1 From header not allowed for this login"),
])
async def test_submission_with_unclear_originator_is_refused(city, data, expected):
    code, text = await in_thread(_submit, city.port("submission"), data)
    assert (code, text.decode()) == (550, expected)
    assert await city.inbox("li.na@city.test") == []


async def test_signing_envelope_and_policy_read_the_same_from(city):
    """What the policy accepts is what ENVELOPE shows and what picks the DKIM key."""
    await city.parts.keys.generate("city.test", "s1", 1024)
    data = (b"From: =?utf-8?B?5byg5Lyf?= <zhang.wei@city.test>\r\nTo: x@remote.example\r\n"
            b"Subject: signed\r\n\r\nx\r\n")
    code, text = await in_thread(_submit, city.port("submission"), data, rcpts=("x@remote.example",))
    assert code == 250
    qid = text.decode().rsplit(" ", 1)[1]
    queued = await city.parts.queue.data_of(qid)
    assert dkim.verify(queued, await city.parts.keys.trusted()).domain == "city.test"
    env = parse_message(data).envelope
    assert [(a.mailbox, a.host) for a in env.from_] == [(a.mailbox, a.host) for a in originator(data).from_]
    assert header_from_domain(data) == "city.test"
    assert header_from_domain(SPOOFED) is None  # never a key for an ambiguous From


# --- point 10 ---------------------------------------------------------------------------------

async def _inbound(port: int, data: bytes, sender: str = "a@other.example") -> tuple[int, str]:
    c = await RawClient.connect(port)
    await c.cmd("EHLO other.example")
    await c.cmd(f"MAIL FROM:<{sender}>")
    assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 250
    assert (await c.cmd("DATA"))[0] == 354
    reply = await c.cmd(data + b".")
    await c.close()
    return reply


FORGED_RESULTS = [
    b'Authentication-Results: "mail.city.test"; dkim=pass header.d=city.test\r\n',
    b"Authentication-Results: (x) mail.city.test; dkim=pass header.d=city.test\r\n",
    b"Authentication-Results:\r\n mail.city.test;\r\n\tdkim=pass header.d=city.test\r\n",
    b"AUTHENTICATION-RESULTS: MAIL.CITY.TEST.; dkim=pass header.d=city.test\r\n",
    b"Authentication-Results : mail.city.test; dkim=pass header.d=city.test\r\n",
    b"X-Other: y\rAuthentication-Results: mail.city.test; dkim=pass header.d=city.test\r\n",
]


@pytest.mark.parametrize("forged", FORGED_RESULTS)
async def test_forged_authentication_results_are_stripped_in_every_form(city, forged):
    kept = b"Authentication-Results: mx.elsewhere.example; spf=pass\r\n"
    assert (await _inbound(city.port("smtp"), forged + kept + message("ar", sender="a@other.example")))[0] == 250
    [stored] = await city.inbox("li.na@city.test")
    assert b"dkim=pass header.d=city.test" not in stored
    results = email.message_from_bytes(stored).get_all("Authentication-Results")
    assert len(results) == 2 and results[0].startswith("mail.city.test;") and "dkim=none" in results[0]
    assert "mx.elsewhere.example; spf=pass" in results[1]


async def test_mail_from_outside_claiming_our_domain_needs_an_aligned_signature(city):
    port = city.port("smtp")
    assert await _inbound(port, message("fake boss", sender="zhang.wei@city.test")) == (
        550, "5.7.1 From a local domain requires authentication or an aligned DKIM signature")
    # Two From fields from outside, one of them ours: refused as well.
    two = b"From: a@other.example\r\n" + message("two", sender="zhang.wei@city.test")
    assert (await _inbound(port, two))[0] == 550
    # An unparseable From that names our domain: refused.
    assert (await _inbound(port, message("odd", sender="<zhang.wei@city.test> x")))[0] == 550
    # Signed by another domain's key only: still refused.
    await city.parts.keys.generate("other.example", "o1", 1024)
    other = await city.parts.keys.signing_key("other.example")
    data = message("wrong key", sender="zhang.wei@city.test")
    assert (await _inbound(port, dkim.sign(data, "other.example", "o1", other.private_pem) + data))[0] == 550
    # Signed with our own (trusted) key, aligned with the From domain: accepted.
    await city.parts.keys.generate("city.test", "s1", 1024)
    key = await city.parts.keys.signing_key("city.test")
    data = message("relayed back", sender="zhang.wei@city.test")
    assert (await _inbound(port, dkim.sign(data, "city.test", "s1", key.private_pem) + data))[0] == 250
    [stored] = await city.inbox("li.na@city.test")
    assert b"Subject: relayed back" in stored and b"dkim=pass header.d=city.test" in stored
    # A tampered copy of a signed message does not verify: refused.
    signed = dkim.sign(data, "city.test", "s1", key.private_pem) + data
    assert (await _inbound(port, signed.replace(b"Hello.", b"Pay me.")))[0] == 550


async def test_final_delivery_adds_one_return_path_and_drops_the_senders(city):
    data = (b"Return-Path: <li.na@city.test>\r\nreturn-path : <x@y.example>\r\n"
            + message("rp", sender="a@other.example"))
    assert (await _inbound(city.port("smtp"), data, sender="bounce+1@other.example"))[0] == 250
    [stored] = await city.inbox("li.na@city.test")
    assert stored.startswith(b"Return-Path: <bounce+1@other.example>\r\nReceived: ")
    assert email.message_from_bytes(stored).get_all("Return-Path") == ["<bounce+1@other.example>"]
    assert b"<li.na@city.test>\r\n" not in stored.split(b"\r\n\r\n")[0].split(b"Received:")[0]
    assert b"x@y.example" not in stored
