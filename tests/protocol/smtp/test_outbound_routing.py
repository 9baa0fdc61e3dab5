"""Outbound routing through the queue to loopback peers: MX order and fallback, implicit and null MX, TLS, AUTH, SMTPUTF8.

The MX resolver and the dialer are the fakes in `fakenet` (the hooks
`delivery.service.build` takes); peers are aiosmtpd servers on 127.0.0.x.
Mail goes in by submission with aiosmtplib and out through the real queue
worker; the test waits for what a peer received or for the queue's state.
"""

from __future__ import annotations

import email
import re
import socket

import aiosmtplib
import pytest

from .fakenet import FakeNet, Peer, Refuser
from .support import PASSWORD, FakeClock, Instance, make_config, message, start_instance, wait_for

SENDER = "zhang.wei@city.test"


@pytest.fixture
async def net():
    return FakeNet()


@pytest.fixture
async def city(tmp_path, net):
    clock = FakeClock()
    cfg = make_config(tmp_path / "city", f"sqlite:///{tmp_path}/city.db",
                      queue={"retry_delays": [60, 300], "warn_after": 900, "expire_after": 7200})
    inst = await start_instance(cfg, clock=clock, dialer=net.dial, resolver=net.mx)
    inst.clock = clock
    await inst.add_user(SENDER)
    try:
        yield inst
    finally:
        await inst.stop()


@pytest.fixture
async def peers(tmp_path):
    started: list = []

    async def start(kind=Peer, **kw):
        if kind is Peer:
            kw.setdefault("cert_dir", tmp_path)
        p = await kind(**kw).start()
        started.append(p)
        return p

    yield start
    for p in started:
        await p.stop()


async def submit(city: Instance, rcpts: list[str], data: bytes, *, options: tuple[str, ...] = ()) -> str:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=city.port("submission"), start_tls=True,
                             validate_certs=False, username=SENDER, password=PASSWORD, local_hostname="pc.city.test")
    await client.connect()
    errors, resp = await client.sendmail(SENDER, rcpts, data, mail_options=list(options))
    await client.quit()
    assert errors == {}, errors
    return resp.rsplit(" ", 1)[1]


def free_port(ip: str) -> int:
    """A port nothing listens on (bound, then closed): connections to it are refused."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


async def queue_rows(city: Instance) -> list[tuple[str, str, int, str | None]]:
    return [(r.rcpt, r.state, r.attempts, r.last_error) for e in await city.parts.queue.entries() for r in e.recipients]


async def dsns(city: Instance, n: int) -> list[email.message.Message]:
    await wait_for(lambda: _inbox_has(city, n), what=f"{n} DSN(s) in the sender's inbox")
    return [email.message_from_bytes(m) for m in await city.inbox(SENDER)]


async def _inbox_has(city: Instance, n: int) -> bool:
    return len(await city.inbox(SENDER)) >= n


def status_part(report: email.message.Message) -> str:
    assert report.get_content_type() == "multipart/report"
    text = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status").as_string()
    return re.sub(r"\r?\n[ \t]+", " ", text)  # unfolded (RFC 5322 §2.2.3)


async def test_mx_hosts_are_tried_by_preference_and_the_next_takes_over_when_one_is_down(city, net, peers):
    refuser = await peers(Refuser, ip="127.0.0.3")
    good = await peers(ip="127.0.0.4")
    spare = await peers(ip="127.0.0.5")
    net.mx_records["remote.test"] = [(20, "mx2.remote.test"), (30, "mx3.remote.test"), (10, "mx1.remote.test"),
                                     (40, "mx4.remote.test")]
    net.hosts.update({"mx1.remote.test": ("127.0.0.2", free_port("127.0.0.2")),  # down: connection refused
                      "mx2.remote.test": (refuser.ip, refuser.port),  # up, but greets with 554
                      "mx3.remote.test": (good.ip, good.port),
                      "mx4.remote.test": (spare.ip, spare.port)})
    data = message("by preference", sender=SENDER, to="ann@remote.test")
    await submit(city, ["ann@remote.test", "bob@remote.test"], data)
    await good.arrived.wait()
    # RFC 5321 §5.1: lowest preference first; a host that does not answer (or refuses at the
    # greeting) gives way to the next; the first that takes MAIL gets the message, once.
    assert net.lookups == ["remote.test"]
    assert net.dialed == ["mx1.remote.test", "mx2.remote.test", "mx3.remote.test"]
    assert refuser.connections == 1 and spare.received == [] and spare.mail_commands == []
    [got] = good.received
    assert (got.mail_from, got.rcpts) == (SENDER, ["ann@remote.test", "bob@remote.test"])
    assert got.data.endswith(data)
    assert got.data[:-len(data)].count(b"Received: ") == 1  # our one trace header, above the original bytes
    await wait_for(lambda: _queue_empty(city), what="an empty queue")


async def test_when_every_mx_is_down_the_message_waits_then_goes_to_the_first_that_returns(city, net, peers):
    good = await peers(ip="127.0.0.6")
    down = free_port("127.0.0.6")
    net.mx_records["remote.test"] = [(10, "a.remote.test"), (20, "b.remote.test")]
    net.hosts.update({"a.remote.test": ("127.0.0.6", down), "b.remote.test": ("127.0.0.7", free_port("127.0.0.7"))})
    await submit(city, ["ann@remote.test"], message("later", sender=SENDER, to="ann@remote.test"))
    await wait_for(lambda: _rows_are(city, [("ann@remote.test", "queued", 1)]), what="a deferred first attempt")
    [(_, _, _, why)] = await queue_rows(city)
    assert why.startswith("cannot connect to 127.0.0.7:") or why.startswith("cannot connect to b.remote.test")
    assert net.dialed == ["a.remote.test", "b.remote.test"]
    net.hosts["b.remote.test"] = (good.ip, good.port)
    city.clock.advance(61)
    city.parts.worker.poke()
    await good.arrived.wait()
    assert net.dialed == ["a.remote.test", "b.remote.test", "a.remote.test", "b.remote.test"]
    assert [r.rcpts for r in good.received] == [["ann@remote.test"]]
    await wait_for(lambda: _queue_empty(city), what="an empty queue")


async def test_a_domain_without_mx_records_is_its_own_mail_host(city, net, peers):
    peer = await peers(ip="127.0.0.8")
    net.hosts["plain.test"] = (peer.ip, peer.port)  # exists (an A record), no MX: RFC 5321 §5.1 implicit MX
    await submit(city, ["ann@plain.test"], message("implicit", sender=SENDER, to="ann@plain.test"))
    await peer.arrived.wait()
    assert net.lookups == ["plain.test"] and net.dialed == ["plain.test"]
    assert [r.rcpts for r in peer.received] == [["ann@plain.test"]]
    assert peer.received[0].tls  # opportunistic TLS: offered, so used (RFC 3207)


async def test_null_mx_and_a_domain_that_does_not_exist_bounce_at_once_with_5_1_2(city, net):
    net.mx_records["nomail.test"] = [(0, "")]  # RFC 7505 §3: "MX 0 ." (dnspython's root name, dot stripped)
    net.nxdomain.add("gone.test")
    await submit(city, ["ann@nomail.test", "bob@gone.test"], message("nowhere", sender=SENDER, to="ann@nomail.test"))
    reports = await dsns(city, 2)
    texts = sorted(status_part(r) for r in reports)
    assert net.dialed == []  # nothing was tried: both are permanent answers from the DNS
    for text, rcpt, why in zip(texts, ("ann@nomail.test", "bob@gone.test"),
                               ("nomail.test accepts no mail (null MX)", "domain gone.test does not exist")):
        assert f"Final-Recipient: rfc822; {rcpt}" in text, text
        assert "Action: failed" in text and "Status: 5.1.2" in text, text
        assert f"Diagnostic-Code: smtp; {why}" in text, text
    await wait_for(lambda: _queue_empty(city), what="an empty queue")


async def test_tls_required_route_to_a_peer_without_starttls_never_sends_in_the_clear(city, net, peers):
    plain = await peers(ip="127.0.0.9", starttls=False)
    await city.parts.routes.add("secure.test", f"{plain.ip}:{plain.port}", tls="required")
    await submit(city, ["ann@secure.test"], message("secret", sender=SENDER, to="ann@secure.test"))
    await wait_for(lambda: _rows_are(city, [("ann@secure.test", "queued", 1)]), what="a deferred attempt")
    [(_, _, _, why)] = await queue_rows(city)
    assert why == f"{plain.ip}:{plain.port} does not offer STARTTLS and the route requires TLS"
    assert plain.mail_commands == [] and plain.received == []  # not a byte of the envelope in the clear
    city.clock.advance(1000)  # past warn_after: the "delayed" DSN carries the deferral's own code
    city.parts.worker.poke()
    [warning] = await dsns(city, 1)
    text = status_part(warning)
    # RFC 3463 X.7.4 "Security features not supported" (what Postfix defers with), not X.4.1 "no answer"
    assert "Action: delayed" in text and "Status: 4.7.4" in text, text
    assert "does not offer STARTTLS and the route requires TLS" in text
    assert plain.mail_commands == [] and plain.received == []
    city.clock.advance(6201)  # past expire_after: the sender learns why
    city.parts.worker.poke()
    reports = await dsns(city, 2)
    [text] = [t for t in map(status_part, reports) if "Action: failed" in t]
    assert "Final-Recipient: rfc822; ann@secure.test" in text and "Status: 5.4.7" in text
    assert "does not offer STARTTLS and the route requires TLS" in text
    assert plain.mail_commands == []
    await wait_for(lambda: _queue_empty(city), what="an empty queue")


async def test_smarthost_gets_our_login_over_tls_and_a_refused_login_defers(city, net, peers):
    relay = await peers(ip="127.0.0.10", auth=("relay@city.test", "relay-secret"))
    await city.parts.routes.add("*", f"{relay.ip}:{relay.port}", tls="required", auth_user="relay@city.test",
                                auth_secret="wrong")
    qid = await submit(city, ["ann@anywhere.example"], message("via relay", sender=SENDER, to="ann@anywhere.example"))
    await wait_for(lambda: _rows_are(city, [("ann@anywhere.example", "queued", 1)]), what="a deferred attempt")
    [(_, _, _, why)] = await queue_rows(city)
    assert why.startswith(f"{relay.ip}:{relay.port} refused our login: 535"), why
    assert set(relay.logins) == {("relay@city.test", "wrong")} and relay.mail_commands == []  # each mechanism tried
    await city.parts.routes.add("*", f"{relay.ip}:{relay.port}", tls="required", auth_user="relay@city.test",
                                auth_secret="relay-secret")
    await city.parts.queue.retry(qid)
    city.parts.worker.poke()
    await relay.arrived.wait()
    [got] = relay.received
    assert got.login == "relay@city.test" and got.tls and got.rcpts == ["ann@anywhere.example"]
    assert relay.logins[-1] == ("relay@city.test", "relay-secret")
    assert net.lookups == []  # the default route, no MX look-up
    await wait_for(lambda: _queue_empty(city), what="an empty queue")


async def test_a_message_needing_smtputf8_is_not_downgraded_for_a_peer_without_it(city, net, peers):
    old = await peers(ip="127.0.0.11", smtputf8=False)
    new = await peers(ip="127.0.0.12", smtputf8=True)
    await city.parts.routes.add("old.test", f"{old.ip}:{old.port}")
    await city.parts.routes.add("new.test", f"{new.ip}:{new.port}")
    # An internationalised address (RFC 6531 §3.3) and, with ASCII addresses, a raw UTF-8 header (RFC 6532 §3).
    await submit(city, ["用户@old.test"], message("to a UTF-8 mailbox", sender=SENDER, to="user@old.test"),
                 options=("SMTPUTF8",))
    utf8_head = message("x", sender=SENDER, to="ann@old.test").replace(b"Subject: x", "Subject: 通知".encode())
    await submit(city, ["ann@old.test", "ann@new.test"], utf8_head, options=("SMTPUTF8",))
    # 8-bit text in the body alone needs only 8BITMIME (RFC 6152), which the old peer has; so does a
    # legacy header in raw GBK (8-bit, not UTF-8: not an RFC 6532 header).
    body8 = message("eight bit", sender=SENDER, to="bob@old.test", body="正文\r\n")
    await submit(city, ["bob@old.test"], body8)
    gbk = message("x", sender=SENDER, to="bob@old.test").replace(b"Subject: x", "Subject: 关于召开年度工作会议的通知".encode("gbk"))
    await submit(city, ["bob@old.test"], gbk)
    await wait_for(lambda: _queue_empty(city), what="an empty queue")
    reports = [status_part(r) for r in await dsns(city, 2)]
    assert len(reports) == 2, re.findall(r"Final-Recipient: [^\n]+", "".join(reports))  # the two that need SMTPUTF8 for the old peer; nothing else bounced
    for text in reports:  # RFC 6531 §3.2: no downgrade; RFC 3463 X.6.7
        assert "Action: failed" in text and "Status: 5.6.7" in text, text
        assert "server does not support SMTPUTF8" in text, text
    assert sorted(re.findall(r"Final-Recipient: ([^\n]+)", "".join(reports))) == [
        "rfc822; ann@old.test", "utf-8; \\x{7528}\\x{6237}@old.test"]  # RFC 6533 §3 utf-8-addr-xtext
    assert old.mail_commands == [SENDER, SENDER]  # only the two that may go reached MAIL there
    # Both went over the link's pooled connections, perhaps side by side: their order is not fixed.
    assert sorted(r.data[-len(body8):] for r in old.received) == sorted([body8, gbk[-len(body8):]])
    assert sum(r.data.endswith(gbk) for r in old.received) == 1
    for got in old.received:
        assert got.rcpts == ["bob@old.test"] and "BODY=8BITMIME" in got.mail_options, got
        assert "SMTPUTF8" not in got.mail_options
        assert f"SIZE={len(got.data)}" in got.mail_options  # RFC 1870 §6, after the EHLO that follows STARTTLS
    [utf8] = new.received  # a peer that has SMTPUTF8 gets it, over TLS (EHLO asked again, RFC 3207 §4.2)
    assert utf8.rcpts == ["ann@new.test"] and "SMTPUTF8" in utf8.mail_options and utf8.data.endswith(utf8_head)
    assert utf8.tls


async def _rows_are(city: Instance, expected: list[tuple[str, str, int]]) -> bool:
    return sorted(r[:3] for r in await queue_rows(city)) == sorted(expected)


async def _queue_empty(city: Instance) -> bool:
    return await city.parts.queue.entries() == []
