"""Mail loops end at the hop limit (RFC 5321 §6.3): two instances forwarding to each other, and a looping queue row.

Two Postroom instances (own domains, own databases) each hold an alias that
forwards to the other's, and each routes the other's domain to it: a message
to the alias goes round until one side counts MAX_RECEIVED Received fields
and refuses it with 554 5.4.6; the other side bounces it to the sender.
"""

from __future__ import annotations

import email
import re

import pytest

from delivery.queue import NewEntry, new_queue_id
from delivery.received import MAX_RECEIVED, hop_count

from .fakenet import Peer
from .support import FakeClock, Instance, RawClient, make_config, message, start_instance, wait_for

SENDER = "zhang.wei@city.test"
STRANGER = "someone@outside.example"


@pytest.fixture
async def pair(tmp_path):
    """City and district, each forwarding loop@ to the other; bounces for outside.example go to a peer."""
    clock = FakeClock()
    outside = await Peer(ip="127.0.0.13", cert_dir=tmp_path).start()
    city = await start_instance(make_config(tmp_path / "city", f"sqlite:///{tmp_path}/city.db"),
                                domains=("city.test",), clock=clock)
    district = await start_instance(make_config(tmp_path / "district", f"sqlite:///{tmp_path}/district.db",
                                                hostname="mail.district.test"),
                                    domains=("district.test",), clock=clock)
    try:
        await city.add_user(SENDER)
        await city.mb.directory.add_alias("loop@city.test", "loop@district.test")
        await district.mb.directory.add_alias("loop@district.test", "loop@city.test")
        await city.parts.routes.add("district.test", f"127.0.0.1:{district.port('smtp')}")
        await district.parts.routes.add("city.test", f"127.0.0.1:{city.port('smtp')}")
        for inst in (city, district):
            await inst.parts.routes.add("outside.example", f"{outside.ip}:{outside.port}")
        yield city, district, outside
    finally:
        await city.stop()
        await district.stop()
        await outside.stop()


@pytest.mark.slow  # a hundred SMTP hops: about 10 s; `make test` runs it
async def test_two_instances_forwarding_to_each_other_stop_at_the_hop_limit_and_bounce(pair):
    city, district, outside = pair
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO outside.example")
    await c.cmd(f"MAIL FROM:<{STRANGER}>")
    assert (await c.cmd("RCPT TO:<loop@city.test>"))[0] == 250
    await c.cmd("DATA")
    assert (await c.cmd(message("round and round", sender=STRANGER, to="loop@city.test") + b"."))[0] == 250
    await c.close()
    await outside.arrived.wait()
    await wait_for(lambda: _queues_empty(city, district), timeout=60, what="both queues empty")
    [bounce] = outside.received  # one bounce, to the envelope sender; the loop is over
    assert (bounce.mail_from, bounce.rcpts) == ("<>", [STRANGER])  # the null reverse-path (aiosmtpd keeps "<>")
    report = email.message_from_bytes(bounce.data)
    assert report.get_content_type() == "multipart/report"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status").as_string()
    status = re.sub(r"\n[ \t]+", " ", status)
    assert "Action: failed" in status and "Status: 5.4.6" in status, status
    assert "554 5.4.6 Too many hops: mail loop detected" in status, status  # the refusing side's reply
    # The returned header of the original shows how far it went: to the limit, not one hop more.
    returned = next(p for p in report.walk()
                    if p.get_content_type() in ("text/rfc822-headers", "message/rfc822")).as_bytes()
    assert returned.count(b"Received: ") == MAX_RECEIVED
    assert b"Subject: round and round" in returned


async def test_smtp_refuses_a_message_with_too_many_received_fields_with_554_5_4_6(pair):
    city, _, _ = pair
    await city.add_user("li.na@city.test")
    def trace(n: int) -> bytes:
        return b"".join(b"Received: from hop%d.example by hop%d.example; Mon, 06 Jan 2025 09:00:00 +0800\r\n"
                        % (i, i + 1) for i in range(n))

    body = message("looped", sender="a@other.example", to="li.na@city.test")
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    for n, expected in ((MAX_RECEIVED - 1, 250), (MAX_RECEIVED, 554)):
        assert (await c.cmd("MAIL FROM:<a@other.example>"))[0] == 250
        assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 250
        assert (await c.cmd("DATA"))[0] == 354
        code, text = await c.cmd(trace(n) + body + b".")
        assert code == expected, (n, code, text)
    assert text == "5.4.6 Too many hops: mail loop detected"
    assert (await c.cmd("NOOP"))[0] == 250  # the session goes on
    await c.close()
    [kept] = await city.inbox("li.na@city.test")
    assert hop_count(kept) == MAX_RECEIVED  # 99 that came plus ours: at the limit, accepted


async def test_a_queued_message_over_the_hop_limit_bounces_without_an_attempt(pair):
    city, _, _ = pair
    looped = b"".join(b"Received: from a by b; Mon, 06 Jan 2025 09:00:00 +0800\r\n" for _ in range(MAX_RECEIVED + 1))
    qid = new_queue_id()
    await city.parts.queue.enqueue(NewEntry(qid, SENDER, ("wang@district.test",),
                                            looped + message("queued loop", sender=SENDER, to="wang@district.test")))
    city.parts.worker.poke()
    await wait_for(lambda: _inbox(city, 1), what="the bounce")
    status = email.message_from_bytes((await city.inbox(SENDER))[0]).as_string()
    assert "Final-Recipient: rfc822; wang@district.test" in status and "Status: 5.4.6" in status
    assert "Remote-MTA" not in status  # no attempt: no host answered anything
    await wait_for(lambda: _queues_empty(city), what="the row settled")  # the DSN is written before the settle


async def _inbox(inst: Instance, n: int) -> bool:
    return len(await inst.inbox(SENDER)) >= n


async def _queues_empty(*insts: Instance) -> bool:
    for inst in insts:
        if await inst.parts.queue.entries():
            return False
    return True
