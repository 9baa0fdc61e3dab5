"""Out-of-office auto-replies (RFC 3834) over real SMTP: once per sender per period, never to lists, robots or null senders.

Mail comes in on port 25 with aiosmtplib; the reply leaves through the real
queue worker to a recording peer on loopback (fakenet.Peer), so the test sees
exactly what another server would get: the MAIL FROM, the recipients and the
message. `personal.settle()` waits for the replies in flight to be submitted;
an empty queue then means everything that was sent has arrived.
"""

from __future__ import annotations

import email
import email.policy
import logging
from datetime import timedelta

import aiosmtplib
import pytest

from mailboxes.mailsettings import OutOfOffice

from .fakenet import Peer
from .support import PASSWORD, FakeClock, Instance, make_config, message, start_instance, wait_for

STRANGER = "wang.fang@outside.example"
HOLIDAY = OutOfOffice(True, None, None, "休假中 On leave", "我在休假，8 日回来。\nOn leave until the 8th.", 7)


@pytest.fixture
async def city(tmp_path, storage_url):
    clock = FakeClock()
    inst = await start_instance(make_config(tmp_path / "data", storage_url), clock=clock)
    inst.clock = clock
    peer = await Peer(ip="127.0.0.14", starttls=False).start()
    inst.peer = peer
    await inst.parts.routes.add("outside.example", f"{peer.ip}:{peer.port}")
    for u in ("zhang.wei@city.test", "li.na@city.test"):
        await inst.add_user(u)
    try:
        yield inst
    finally:
        await inst.stop()
        await peer.stop()


async def holiday(city: Instance, address: str, ooo: OutOfOffice = HOLIDAY) -> None:
    acct = await city.mb.directory.account(address)
    await city.mb.settings.set_out_of_office(acct.id, ooo)


async def inbound(city: Instance, data: bytes, *, mail_from: str = STRANGER,
                  rcpts: tuple[str, ...] = ("li.na@city.test",)) -> list:
    """Send on port 25; return what left for the outside peer because of it (after the replies settle)."""
    before = len(city.peer.received)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=city.port("smtp"), start_tls=False) as s:
        errors, _ = await s.sendmail(mail_from, list(rcpts), data)  # "" is MAIL FROM:<>
    assert not errors, errors
    await city.parts.submitter.personal.settle()
    await wait_for(lambda: _queue_empty(city), what="an empty queue")
    return city.peer.received[before:]


async def _queue_empty(city: Instance) -> bool:
    return await city.parts.queue.entries() == []


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


async def test_one_reply_per_sender_per_period_with_null_return_path_and_auto_submitted(city):
    await holiday(city, "li.na@city.test")
    first = message("季度报告", sender=STRANGER)
    [reply] = await inbound(city, first)
    assert reply.mail_from == "<>" and reply.rcpts == [STRANGER]  # RFC 3834 §3.3: MAIL FROM:<>
    m = parsed(reply.data)
    assert m["Auto-Submitted"] == "auto-replied"
    original_id = parsed(first)["Message-ID"]
    assert m["In-Reply-To"] == original_id and original_id in m["References"]
    assert m["Subject"] == "休假中 On leave" and m["To"] == STRANGER and "li.na@city.test" in m["From"]
    assert "我在休假" in m.get_content()
    assert len(await city.inbox("li.na@city.test")) == 1

    assert await inbound(city, message("again", sender=STRANGER)) == []  # within the 7 days
    city.clock.advance(timedelta(days=6, hours=23).total_seconds())
    assert await inbound(city, message("still", sender=STRANGER)) == []
    city.clock.advance(timedelta(hours=1, seconds=1).total_seconds())
    [again] = await inbound(city, message("a week later", sender=STRANGER))
    assert again.rcpts == [STRANGER] and parsed(again.data)["Auto-Submitted"] == "auto-replied"
    assert len(await city.inbox("li.na@city.test")) == 4  # every message delivered all the same


async def test_no_reply_to_null_senders_robots_lists_bulk_groups_or_bcc(city):
    await holiday(city, "li.na@city.test")
    await city.mb.directory.add_group("team@city.test", "Team", post_policy="anyone")
    await city.mb.directory.set_group_members("team@city.test", add=["li.na@city.test"])
    cases = [
        (message("bounce", sender="MAILER-DAEMON@outside.example"), "", ("li.na@city.test",)),
        (message("auto", sender=STRANGER, extra="Auto-Submitted: auto-generated\r\n"), STRANGER, None),
        (message("auto2", sender=STRANGER, extra="Auto-Submitted: Auto-Replied (vacation)\r\n"), STRANGER, None),
        (message("list", sender=STRANGER, extra="List-Id: Staff news <news.outside.example>\r\n"), STRANGER, None),
        (message("unsub", sender=STRANGER, extra="List-Unsubscribe: <mailto:u@outside.example>\r\n"), STRANGER,
         None),
        (message("bulk", sender=STRANGER, extra="Precedence: bulk\r\n"), STRANGER, None),
        (message("junk", sender=STRANGER, extra="Precedence: junk\r\n"), STRANGER, None),
        (message("daemon", sender="mailer-daemon@outside.example"), "MAILER-DAEMON@outside.example", None),
        (message("owner", sender="owner-staff@outside.example"), "owner-staff@outside.example", None),
        (message("request", sender="staff-request@outside.example"), "staff-request@outside.example", None),
        (message("via group", sender=STRANGER, to="team@city.test"), STRANGER, ("team@city.test",)),
        (message("bcc", sender=STRANGER, to="someone@outside.example"), STRANGER, None),
    ]
    for data, mail_from, rcpts in cases:
        assert await inbound(city, data, mail_from=mail_from, rcpts=rcpts or ("li.na@city.test",)) == [], data[:80]
    assert len(await city.inbox("li.na@city.test")) == len(cases)
    # The same sender, addressed directly, does get one: the cases above were refused for their reason.
    [reply] = await inbound(city, message("direct", sender=STRANGER))
    assert reply.rcpts == [STRANGER]


async def test_replies_to_mail_addressed_to_an_alias_of_the_account(city):
    await city.mb.directory.add_alias("office@city.test", "li.na@city.test")
    await holiday(city, "li.na@city.test")
    [reply] = await inbound(city, message("to the alias", sender=STRANGER, to="Office <office@city.test>"),
                            rcpts=("office@city.test",))
    assert reply.rcpts == [STRANGER]


async def test_no_reply_outside_the_dates(city):
    now = city.clock()
    await holiday(city, "li.na@city.test", OutOfOffice(True, now + timedelta(days=1), now + timedelta(days=3),
                                                       "", "away", 7))
    assert await inbound(city, message("before", sender=STRANGER)) == []
    city.clock.advance(timedelta(days=1, seconds=1).total_seconds())
    [reply] = await inbound(city, message("during", sender=STRANGER))
    assert parsed(reply.data)["Subject"] == "Auto: during"  # RFC 3834 §3.1.5 when no subject is set
    city.clock.advance(timedelta(days=2).total_seconds())
    assert await inbound(city, message("after", sender="other@outside.example")) == []


async def test_two_local_accounts_on_holiday_do_not_ping_pong(city):
    await holiday(city, "li.na@city.test")
    await holiday(city, "zhang.wei@city.test")
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=city.port("submission"), start_tls=True,
                               validate_certs=False) as s:
        await s.login("zhang.wei@city.test", PASSWORD)
        await s.send_message(parsed(message("lunch?", sender="zhang.wei@city.test", to="li.na@city.test")))
    await city.parts.submitter.personal.settle()  # li.na's reply, written to zhang.wei
    await city.parts.submitter.personal.settle()  # anything zhang.wei's copy set off (nothing)
    [original] = await city.inbox("li.na@city.test")
    [reply] = await city.inbox("zhang.wei@city.test")
    assert b"Return-Path: <>" in reply and parsed(reply)["Auto-Submitted"] == "auto-replied"
    assert b"lunch?" in original
    assert city.peer.received == []


async def test_a_failing_auto_reply_does_not_fail_the_delivery(city, caplog, monkeypatch):
    await holiday(city, "li.na@city.test")

    async def broken(to, data):
        raise RuntimeError("queue on fire")
    monkeypatch.setattr(city.parts.submitter.personal, "send", broken)
    with caplog.at_level(logging.ERROR, logger="postroom.personal"):
        assert await inbound(city, message("hello", sender=STRANGER)) == []
    assert len(await city.inbox("li.na@city.test")) == 1
    assert any("autoreply" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


async def test_a_crash_before_the_copy_commits_loses_no_reply_and_sends_none_twice(city, monkeypatch):
    """The reply is submitted before the copy is written (delivery/personal.py): the write failing as a crash
    would leaves the message unacknowledged (4xx); the client sends it again; one reply in all, one copy."""
    await holiday(city, "li.na@city.test")
    store = city.mb.store
    real = store.deliver
    crashes = []

    async def crash_once(delivery):
        if not crashes:
            crashes.append(delivery)
            raise OSError("the disk went away before the commit")  # nothing of the copy was written
        return await real(delivery)
    monkeypatch.setattr(store, "deliver", crash_once)
    data = message("季度报告", sender=STRANGER)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=city.port("smtp"), start_tls=False) as s:
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await s.sendmail(STRANGER, ["li.na@city.test"], data)
    assert 400 <= refused.value.code < 500  # not acknowledged: the client keeps the message and retries
    assert crashes and await city.inbox("li.na@city.test") == []
    await wait_for(lambda: _queue_empty(city), what="the reply sent")
    [reply] = city.peer.received  # already out: it was durable before the copy was tried
    assert reply.rcpts == [STRANGER] and parsed(reply.data)["Auto-Submitted"] == "auto-replied"
    assert await inbound(city, data) == []  # the client's retry: delivered, no second reply
    assert len(await city.inbox("li.na@city.test")) == 1 and len(city.peer.received) == 1


async def test_mail_to_an_account_without_settings_reads_no_settings(city):
    """The hook costs no statement for accounts with nothing set (a cached set of active accounts)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    await holiday(city, "zhang.wei@city.test")  # somebody has settings; li.na has none
    await inbound(city, message("warm", sender=STRANGER))
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        seen.append(statement)
    event.listen(Engine, "before_cursor_execute", count)
    try:
        for i in range(3):
            assert await inbound(city, message(f"plain {i}", sender=STRANGER)) == []
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert seen and not [s for s in seen if any(n in s for n in ("mail_settings", "mail_rules", "autoreply_sent"))]
