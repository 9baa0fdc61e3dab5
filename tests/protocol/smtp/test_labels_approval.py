"""Held mail (issue 13): every path out fails while approval is pending and delivers once approved.

Two Postroom instances on loopback: the city (labels enforced, the office
approves) and an "outside" organisation reached by a static route. Mail goes
in by real SMTP submission (aiosmtplib), inbound SMTP and the bridge's
submit(); waiting is polling for a condition with a deadline.
"""

from __future__ import annotations

import base64
import email
import re
from email.policy import default
from email.utils import make_msgid

import aiosmtplib
import pytest

from delivery.approval import Approvals
from delivery.dkim import DEFAULT_SIGNED_HEADERS
from delivery.submit import Submission
from mailboxes.errors import InvalidInput, NotFound
from mailboxes.held import DepartmentLabels
from mailboxes.mailsettings import OutOfOffice
from tests.protocol.smtp.support import PASSWORD, make_config, message, start_instance, wait_for

ZHANG, LI, LEADER = "zhang.wei@city.test", "li.na@city.test", "leader@city.test"
BOB = "bob@outside.test"


async def submit(inst, subject: str, to: list[str], *, sender: str = ZHANG, extra: str = "",
                 hdr_to: str | None = None) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=inst.port("submission"), start_tls=True,
                             validate_certs=False, username=sender, password=PASSWORD)
    await client.connect()
    errors, _ = await client.sendmail(sender, to, message(subject, sender=sender, to=hdr_to or to[0], extra=extra))
    await client.quit()
    assert errors == {}


async def subjects(inst, address: str) -> list[str]:
    return [str(email.message_from_bytes(m, policy=default)["Subject"]) for m in await inst.inbox(address)]


@pytest.fixture
async def sites(tmp_path, storage_url):
    city = await start_instance(make_config(tmp_path / "city", storage_url, labels={
        "enabled": True, "approvers": "office@city.test"}), domains=("city.test",))
    outside = await start_instance(make_config(tmp_path / "out", f"sqlite:///{tmp_path}/out.db",
                                               hostname="mail.outside.test"), domains=("outside.test",))
    try:
        for a in (ZHANG, LI, LEADER):
            await city.add_user(a)
        await outside.add_user(BOB)
        await city.mb.directory.add_group("office@city.test", "办公室")
        await city.mb.directory.set_group_members("office@city.test", add=[LEADER])
        await city.mb.directory.add_group("team@city.test", "Team", post_policy="anyone")
        await city.mb.directory.set_group_members("team@city.test", add=[LI, BOB])
        await city.mb.directory.add_alias("leak@city.test", BOB)
        await city.parts.routes.add("outside.test", f"127.0.0.1:{outside.port('smtp')}", tls="opportunistic")
        yield city, outside
    finally:
        await city.stop()
        await outside.stop()


@pytest.mark.slow
async def test_held_mail_leaves_by_no_path_until_approved(sites):
    city, outside = sites
    sub = city.parts.submitter
    li = await city.mb.directory.account(LI)
    await city.mb.settings.set_out_of_office(li.id, OutOfOffice(True, None, None, "休假 away", "On leave.", 7))

    # Every way out, while nothing is approved.
    await submit(city, "direct header", [BOB], extra="X-Postroom-Classification: internal\r\n")
    await submit(city, "[敏感] direct tag", [BOB])
    await submit(city, "default label", [BOB])
    await submit(city, "alias", ["leak@city.test"], hdr_to="leak@city.test")
    await submit(city, "group", ["team@city.test"], hdr_to="team@city.test")
    await submit(city, "autoreply", [LI, BOB])  # li.na is away: her reply goes to zhang, never to bob
    await submit(city, "Re: reply", [BOB], sender=LI,
                 extra=f"In-Reply-To: {make_msgid()}\r\nX-Postroom-Classification: 内部\r\n")
    bridge = message("bridge", sender=ZHANG, to=BOB, extra="X-Postroom-Classification: 敏感\r\n")
    out = await sub.submit(Submission("", (BOB,), bridge, origin="bridge"))
    assert out.accepted and out.held == 1 and out.queued == 0
    await submit(city, "control", [BOB], extra="X-Postroom-Classification: 公开\r\n")  # public: goes at once

    # The queue's own ways out: retry everything and release every (admin-)held entry, as the CLI does.
    await city.parts.queue.retry(None)
    for e in await city.parts.queue.entries():
        await city.parts.queue.release(e.queue_id)
    city.parts.worker.poke()
    await wait_for(lambda: _has(outside, "control"), what="the public control message")
    await wait_for(lambda: _zero(city), what="an empty queue")
    assert await subjects(outside, BOB) == ["control"]
    assert "group" in await subjects(city, LI)  # local members get theirs at once
    await wait_for(lambda: _auto_replied(city), what="li.na's auto-reply to zhang")
    pending = await sub.held.pending()
    assert sorted(h.subject for h in pending) == sorted(
        ["direct header", "[敏感] direct tag", "default label", "alias", "group", "autoreply", "Re: reply",
         "bridge"])
    assert all(h.recipients == (BOB,) for h in pending)
    # The office is asked, by mail, showing the message.
    requests = await city.inbox(LEADER)
    assert len(requests) == 8 and all(b"message/rfc822" in r and b"bob@outside.test" in r for r in requests)
    assert sorted(int(m) for r in requests for m in re.findall(rb"/approvals/(\d+)", r)) == sorted(
        h.id for h in pending)  # each names its page

    # Only approvers see or decide; another account's view of an id is "not found".
    approvals = Approvals(sub)
    zhang = await city.mb.directory.account(ZHANG)
    leader = await city.mb.directory.account(LEADER)
    assert await approvals.pending(zhang) == []
    with pytest.raises(NotFound):
        await approvals.approve(pending[0].id, zhang)

    reject, *approve = pending
    await approvals.reject(reject.id, leader, "不宜外发 not for outside")
    for h in approve:
        await approvals.approve(h.id, leader)
    with pytest.raises(InvalidInput):
        await approvals.approve(approve[0].id, leader)  # decided once
    want = sorted(["control"] + [h.subject for h in approve])
    await wait_for(lambda: _subjects_are(outside, want), what="the approved messages at outside.test")
    dsn = [m for m in await city.inbox(ZHANG) if b"not for outside" in m]
    assert len(dsn) == 1 and b"5.7.1" in dsn[0]

    # The label travels signed-for in its header and as a banner of a plain-text body.
    got = {str(email.message_from_bytes(m, policy=default)["Subject"]): m for m in await outside.inbox(BOB)}
    assert "X-Postroom-Classification: 内部".encode() in got["alias"]  # the default label
    assert b"\r\n\r\n[INTERNAL]\r\n\r\nHello." in got["alias"]  # no charset declared: the ASCII banner
    assert "X-Postroom-Classification: 敏感".encode() in got["bridge"]
    assert "x-postroom-classification" in DEFAULT_SIGNED_HEADERS
    actions = [e["action"] for e in await city.mb.directory.audit_entries(200)]
    assert actions.count("held") == 8 and actions.count("approved") == 7 and actions.count("released") == 7
    assert actions.count("rejected") == 1


async def _auto_replied(city) -> bool:
    return any(b"Auto-Submitted: auto-replied" in m for m in await city.inbox(ZHANG))


async def _has(inst, subject: str) -> bool:
    return subject in await subjects(inst, BOB)


async def _zero(city) -> bool:
    return all(r.state == "sent" for e in await city.parts.queue.entries() for r in e.recipients)


async def _subjects_are(inst, want: list[str]) -> bool:
    return sorted(await subjects(inst, BOB)) == want


async def test_inbound_label_header_is_not_trusted(sites):
    city, _ = sites
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=city.port("smtp"), start_tls=False)
    await client.connect()
    data = message("from outside", sender=BOB, to=LI, extra="X-Postroom-Classification: 公开\r\n")
    errors, _ = await client.sendmail(BOB, [LI], data)
    await client.quit()
    assert errors == {}
    [copy] = [m for m in await city.inbox(LI) if b"from outside" in m]
    assert b"X-Postroom-Classification" not in copy


@pytest.mark.slow
async def test_a_department_default_label_applies_when_none_is_given(sites):
    city, _ = sites
    await city.mb.directory.add_department("press", "新闻处")
    await city.add_user("spokes@city.test", department="press")
    await DepartmentLabels(city.mb.router.central).set("press", "公开")
    await submit(city, "press default", [BOB], sender="spokes@city.test")
    await submit(city, "press sensitive", [BOB], sender="spokes@city.test",
                 extra="X-Postroom-Classification: sensitive\r\n")  # the sender's choice beats the default
    await submit(city, "no department", [BOB])
    assert sorted(h.subject for h in await city.parts.submitter.held.pending()) == ["no department",
                                                                                    "press sensitive"]


@pytest.mark.slow
async def test_forwarded_or_quoted_labelled_mail_keeps_its_label(sites):
    """Forward (as an attachment, as the webmail does), an inline forward or a reply quoting labelled mail:
    the new message carries the most restricted label of what it passes on, whatever it asks for itself."""
    city, outside = sites
    await city.mb.directory.add_department("press", "新闻处")
    await city.add_user("spokes@city.test", department="press")
    await DepartmentLabels(city.mb.router.central).set("press", "公开")  # the press office's mail is public
    spokes = "spokes@city.test"
    await submit(city, "sensitive memo", [spokes], hdr_to=spokes, extra=(
        "X-Postroom-Classification: 敏感\r\nContent-Type: text/plain; charset=utf-8\r\n"))
    [memo] = [m for m in await city.inbox(spokes) if b"sensitive memo" in m]
    banner = "【敏感 SENSITIVE】".encode()
    assert banner in memo and "X-Postroom-Classification: 敏感".encode() in memo

    utf8 = "Content-Type: text/plain; charset=utf-8\r\n"
    forward = (f"From: {spokes}\r\nTo: {BOB}\r\nSubject: Fwd: attached\r\nMIME-Version: 1.0\r\n"
               "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nFYI\r\n"
               "--b1\r\nContent-Type: message/rfc822\r\n\r\n").encode() + memo + b"\r\n--b1--\r\n"
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=city.port("submission"), start_tls=True,
                             validate_certs=False, username=spokes, password=PASSWORD)
    await client.connect()
    for data in (forward,
                 message("Fwd: inline", sender=spokes, to=BOB, extra=utf8,
                         body="FYI\r\n\r\n-------- Forwarded --------\r\n【敏感 SENSITIVE】\r\n\r\nHello.\r\n"),
                 message("Re: quoted", sender=spokes, to=BOB, extra=utf8 + "X-Postroom-Classification: 公开\r\n",
                         body="No.\r\n\r\n> 【敏感 SENSITIVE】\r\n> Hello.\r\n"),
                 message("Re: quoted-printable", sender=spokes, to=BOB,
                         extra=utf8 + "Content-Transfer-Encoding: quoted-printable\r\n",
                         body="No.\r\n\r\n> =E3=80=90=E6=95=8F=E6=84=9F SENSITIVE=E3=80=91\r\n"),
                 message("Re: base64", sender=spokes, to=BOB,  # as Foxmail and Outlook send a Chinese reply
                         extra="Content-Type: text/plain; charset=gbk\r\nContent-Transfer-Encoding: base64\r\n",
                         body=base64.encodebytes("不行。\r\n\r\n> 【敏感 SENSITIVE】\r\n> Hello.\r\n".encode("gbk"))
                         .decode().replace("\n", "\r\n")),
                 message("press release", sender=spokes, to=BOB, extra=utf8, body="新闻稿 public.\r\n")):
        errors, _ = await client.sendmail(spokes, [BOB], data)
        assert errors == {}
    await client.quit()
    city.parts.worker.poke()
    await wait_for(lambda: _has(outside, "press release"), what="the press office's own public mail")
    held = {h.subject: h for h in await city.parts.submitter.held.pending()}
    assert sorted(held) == ["Fwd: attached", "Fwd: inline", "Re: base64", "Re: quoted", "Re: quoted-printable"]
    assert await subjects(outside, BOB) == ["press release"]
    leader = await city.mb.directory.account(LEADER)
    await Approvals(city.parts.submitter).approve(held["Fwd: attached"].id, leader)
    await wait_for(lambda: _subjects_are(outside, ["Fwd: attached", "press release"]), what="the approved forward")
    [sent] = [m for m in await outside.inbox(BOB) if b"Fwd: attached" in m]
    assert email.message_from_bytes(sent, policy=default).get_all("X-Postroom-Classification") == ["敏感"]
