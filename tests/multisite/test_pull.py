"""Pull mode: a city holds a district's mail in a pull account; the district fetches it over IMAPS through a faulty link, exactly once and in order.

Two Postroom instances with their own databases (as tests/multisite does), the district's
fetcher talking to the city's IMAPS listener through tests/faultproxy.py. The proxy resets
connections in the middle of FETCH and the test takes the link down between the district's
commit and its EXPUNGE at the city (the fetcher's after_commit seam); each message must still
arrive once, in the order the city stored it, with the city's DKIM signature verifying.
"""

from __future__ import annotations

import email
import email.policy

import aiosmtplib
import pytest

from bridges import pull
from bridges.pullclient import PullError
from delivery.pullroute import new_secret
from delivery.submit import Submission
from mailserver.imap.server import start as start_imap
from tests.faultproxy import FaultProxy
from tests.protocol.smtp.support import make_config, message, start_instance, wait_for

SENDER = "zhang.wei@city.test"
RECIPIENT = "wang@district.test"
PULL_ACCOUNT = "pull-district@city.test"
MAX_ROUNDS = 12


def _subject(raw: bytes) -> str:
    return email.message_from_bytes(raw, policy=email.policy.default)["Subject"]


class Link:
    """The city (SMTP + IMAPS), the district, the proxy between them and the district's fetcher."""

    def __init__(self, city, district, proxy, fetcher) -> None:
        self.city, self.district, self.proxy, self.fetcher = city, district, proxy, fetcher

    async def held(self) -> list[bytes]:
        return await self.city.inbox(PULL_ACCOUNT)

    async def send(self, subject: str, *, to: str = RECIPIENT, size: int = 0) -> None:
        """Submit at the city and wait until the queue worker has stored it in the pull account (keeps the order)."""
        before = len(await self.held())
        body = "".join(f"line {i:05d} of the quarterly tax report\r\n" for i in range(size // 40)) or "Hello.\r\n"
        out = await self.city.parts.submitter.submit(Submission(SENDER, (to,), message(
            subject, sender=SENDER, to=to, body=body), origin="webmail"))
        assert out.accepted, out
        await wait_for(lambda: self._count(before + 1), what=f"{subject} held at the city")

    async def _count(self, n: int) -> bool:
        """Counted without reading bodies: the fetcher may expunge one (and its blob) meanwhile."""
        mb = self.city.mb
        folder = await mb.store.folder(await mb.directory.account(PULL_ACCOUNT), "INBOX")
        return len(await mb.store.messages(folder.ref)) == n

    async def pull_until_empty(self) -> tuple[list[pull.PullResult], int]:
        """Rounds until the city holds nothing; returns each finished round's result and the failed rounds."""
        results, failures = [], 0
        for _ in range(MAX_ROUNDS):
            try:
                results.append(await self.fetcher.fetch())
            except PullError:
                failures += 1
                continue
            if not await self.held():
                return results, failures
        raise AssertionError(f"still held after {MAX_ROUNDS} rounds: {len(await self.held())}")


@pytest.fixture
async def link(tmp_path):
    secret = new_secret()
    city = await start_instance(make_config(tmp_path / "city", f"sqlite:///{tmp_path}/city.db",
                                            hostname="mail.city.test", listen={"imaps": "127.0.0.1:0"}),
                                domains=("city.test",))
    city.services += await start_imap(city.ctx)
    imaps_port = city.ctx.extras["imap"].addresses["imaps"][1]
    proxy = FaultProxy("127.0.0.1", imaps_port)
    await proxy.start()
    district = await start_instance(make_config(
        tmp_path / "district", f"sqlite:///{tmp_path}/district.db", hostname="mail.district.test",
        pull={"upstream": f"127.0.0.1:{proxy.port}", "account": PULL_ACCOUNT, "password": secret,
              "ca_file": str(city.ctx.config.tls_cert), "interval": 0, "timeout": 20}),
        domains=("district.test",))
    try:
        await city.add_user(SENDER)
        await city.add_user(PULL_ACCOUNT, password=secret)
        await city.parts.routes.add_pull("district.test", PULL_ACCOUNT, secret)
        await district.add_user(RECIPIENT)
        _, txt = await city.parts.keys.generate("city.test", "s2026", 1024)
        await district.parts.keys.trust("city.test", "s2026", txt)
        fetcher = pull.build(district.mb, district.ctx.config, district.parts)
        yield Link(city, district, proxy, fetcher)
    finally:
        await district.stop()
        await city.stop()  # its IMAP listener ends the sessions the proxy still carries
        await proxy.close()


async def test_each_message_arrives_once_and_in_order_though_the_link_resets_mid_fetch_and_before_expunge(
        link, monkeypatch):
    monkeypatch.setattr(pull, "PULL_BATCH_BYTES", 60_000)  # batches of two 25 KB messages: several per round
    subjects = [f"report {i:02d}" for i in range(10)]
    for s in subjects:
        await link.send(s, size=25_000)
    held = [_subject(m) for m in await link.held()]
    assert held == subjects
    # Resets in the middle of FETCH, the city to the district: the first connection in its first
    # batch, the fourth after it removed one batch (see below) and while it fetches the next.
    for after in (30_000, 10 << 20, 10 << 20, 60_000):
        link.proxy.reset_after(after, direction="down")
    cut_at = [[3, 4], [7, 8]]
    cut = []

    async def cut_before_expunge(uids: list[int]) -> None:
        # The district has committed these; the link goes before the city hears UID EXPUNGE.
        if uids in cut_at and uids not in cut:
            cut.append(uids)
            assert len(await link.held()) == {3: 8, 7: 4}[uids[0]]  # these two and the rest still at the city
            link.proxy.set_offline(True)
            link.proxy.set_offline(False)

    link.fetcher.after_commit = cut_before_expunge
    results, failures = await link.pull_until_empty()

    got = await link.district.inbox(RECIPIENT)
    assert [_subject(m) for m in got] == subjects  # once each, in the order the city stored them
    assert cut == cut_at and failures == 4 and link.proxy.counters.resets == 4, (failures, link.proxy.counters)
    for raw in got:
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert b"X-Postroom-Envelope" not in head  # the sealed envelope stays at the city
        assert b"dkim=pass header.d=city.test" in head  # the city's signature verifies here: bytes intact
        assert b"Return-Path: <zhang.wei@city.test>" in head
    assert await link.held() == []
    # Nothing is left over: a further round finds nothing and delivers nothing.
    again = await link.fetcher.fetch()
    assert (again.delivered, again.duplicates, again.removed) == (0, 0, 0)


async def test_one_stored_message_per_envelope_delivered_to_each_recipient_of_it(link):
    await link.district.add_user("li@district.test")
    out = await link.city.parts.submitter.submit(Submission(SENDER, (RECIPIENT, "li@district.test"), message(
        "two at once", sender=SENDER, to=RECIPIENT), origin="webmail"))
    assert out.accepted
    [stored] = await wait_for(link.held, what="the message held at the city")
    assert stored.count(b"X-Postroom-Envelope-To:") == 2
    r = await link.fetcher.fetch()
    assert (r.delivered, r.removed) == (1, 1)
    for who in (RECIPIENT, "li@district.test"):
        [m] = await link.district.inbox(who)
        assert _subject(m) == "two at once"


async def test_mail_sent_straight_to_the_pull_account_with_forged_envelope_fields_is_never_delivered(link):
    """Only what the city's queue sealed is trusted: SMTP to the pull account cannot name recipients at the district."""
    forged = (b"X-Postroom-Envelope: v=1; rcpts=1; mac=" + b"0" * 64 + b"\r\n"
              b"X-Postroom-Envelope-From: <boss@city.test>\r\n"
              b"X-Postroom-Envelope-To: <wang@district.test>\r\n" + message("forged", sender="x@elsewhere.test",
                                                                            to=PULL_ACCOUNT))
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=link.city.port("smtp"), start_tls=False)
    await client.connect()
    for data in (forged, message("plain", sender="x@elsewhere.test", to=PULL_ACCOUNT)):
        errors, _ = await client.sendmail("x@elsewhere.test", [PULL_ACCOUNT], data)
        assert errors == {}
    await client.quit()
    await wait_for(lambda: link._count(2), what="both held at the city")
    await link.send("genuine")
    r = await link.fetcher.fetch()
    assert (r.unsealed, r.delivered, r.removed) == (2, 1, 3)
    assert [_subject(m) for m in await link.district.inbox(RECIPIENT)] == ["genuine"]
    # Kept at the city for an administrator, out of the INBOX: not fetched again, not lost.
    assert sorted(_subject(m) for m in await link.city.inbox(PULL_ACCOUNT, pull.UNSEALED_FOLDER)) == ["forged", "plain"]
    assert await link.held() == []
    assert (await link.fetcher.fetch()).unsealed == 0


async def test_a_wrong_password_or_an_unknown_certificate_fails_the_round_and_loses_nothing(link, tmp_path):
    await link.send("waiting")
    bad = pull.PullConfig(**{**link.fetcher.cfg.__dict__, "password": "not it"})
    with pytest.raises(PullError, match="LOGIN"):
        await pull.Fetcher(bad, link.fetcher.records, link.fetcher.leases, link.fetcher.acceptor,
                           link.fetcher.submitter).fetch()
    from mailserver import tls
    tls.make_self_signed(tmp_path / "other.pem", tmp_path / "other.key", "mail.city.test")
    stranger = pull.PullConfig(**{**link.fetcher.cfg.__dict__, "ca_file": str(tmp_path / "other.pem")})
    with pytest.raises(PullError):
        await pull.Fetcher(stranger, link.fetcher.records, link.fetcher.leases, link.fetcher.acceptor,
                           link.fetcher.submitter).fetch()
    assert len(await link.held()) == 1 and await link.district.inbox(RECIPIENT) == []
    r = await link.fetcher.fetch()
    assert r.delivered == 1 and await link.held() == []


async def test_starttls_upstream(link):
    """`[pull] tls = "starttls"`: the same round over the city's IMAP listener with STARTTLS."""
    from mailserver.imap.server import ImapService
    svc: ImapService = link.city.ctx.extras["imap"]
    await svc.listen("imap", "127.0.0.1", 0, implicit_tls=False)
    port = svc.addresses["imap"][1]
    cfg = pull.PullConfig(**{**link.fetcher.cfg.__dict__, "tls": "starttls", "port": port})
    fetcher = pull.Fetcher(cfg, link.fetcher.records, link.fetcher.leases, link.fetcher.acceptor,
                           link.fetcher.submitter)
    await link.send("over starttls")
    r = await fetcher.fetch()
    assert r.delivered == 1
    assert [_subject(m) for m in await link.district.inbox(RECIPIENT)] == ["over starttls"]


async def test_the_server_fetches_at_start_and_when_the_link_comes_up(link):
    """`postroom serve`'s starter (bridges.pull.start) from the `[pull]` config: a round at start, one per poke."""
    await link.send("before start")
    [svc] = await pull.start(link.district.ctx)
    try:
        await wait_for(lambda: link.district.inbox(RECIPIENT), what="fetched at start")
        await wait_for(lambda: link._count(0), what="removed at the city")
        await link.send("after the link came up")
        svc.poke()
        await wait_for(lambda: _has(link, 2), what="fetched when poked")
    finally:
        await svc.close()
    assert [_subject(m) for m in await link.district.inbox(RECIPIENT)] == ["before start", "after the link came up"]


async def _has(link: Link, n: int) -> bool:
    return len(await link.district.inbox(RECIPIENT)) == n


async def test_an_unknown_recipient_is_bounced_from_the_district_and_an_oversized_message_left_at_the_city(
        link, monkeypatch):
    await link.send("for nobody", to="nobody@district.test")
    await link.send("too big", size=30_000)
    await link.send("fine")
    small = pull.PullConfig(**{**link.fetcher.cfg.__dict__, "max_size": 20_000})
    fetcher = pull.Fetcher(small, link.fetcher.records, link.fetcher.leases, link.fetcher.acceptor,
                           link.fetcher.submitter)
    r = await fetcher.fetch()
    assert (r.delivered, r.bounced, r.oversize, r.removed) == (1, 1, 1, 2)
    assert [_subject(m) for m in await link.held()] == ["too big"]  # left there, logged each round
    assert [_subject(m) for m in await link.district.inbox(RECIPIENT)] == ["fine"]
    # The DSN goes to the city's sender from the district's queue (by SMTP push, like every reply).
    [dsn] = [e for e in await link.district.parts.queue.entries() if e.mail_from == ""]
    assert [x.rcpt for x in dsn.recipients] == [SENDER]
    assert b"nobody@district.test" in await link.district.parts.queue.data_of(dsn.queue_id)


async def test_one_fetcher_at_a_time_per_upstream(link):
    await link.send("once")
    other = pull.Fetcher(link.fetcher.cfg, link.fetcher.records, link.fetcher.leases, link.fetcher.acceptor,
                         link.fetcher.submitter)  # another process (postroom pull now) or node
    assert await link.fetcher.leases.acquire(other._lease, other._holder, 60)
    r = await link.fetcher.fetch()
    assert r.busy and r.delivered == 0 and len(await link.held()) == 1
    await link.fetcher.leases.release(other._lease, other._holder)
    assert (await link.fetcher.fetch()).delivered == 1


async def test_after_a_uidvalidity_change_a_message_delivered_before_is_known_by_its_digest(link):
    """The city's mailbox re-created (new UIDVALIDITY, UIDs renumbered) after the district committed but before the EXPUNGE."""
    from sqlalchemy import update

    from mailboxes import schema as t
    await link.send("only once")

    async def cut(uids):
        link.proxy.set_offline(True)
        link.proxy.set_offline(False)

    link.fetcher.after_commit = cut
    with pytest.raises(PullError):
        await link.fetcher.fetch()
    link.fetcher.after_commit = None
    # What the district recorded no longer matches by (UIDVALIDITY, UID): as after a new UIDVALIDITY.
    async with link.district.mb.router.central.write() as conn:
        await conn.execute(update(t.pull_fetched).values(uidvalidity=t.pull_fetched.c.uidvalidity + 1,
                                                         uid=t.pull_fetched.c.uid + 100))
    r = await link.fetcher.fetch()
    assert (r.delivered, r.duplicates, r.removed) == (0, 1, 1)
    assert [_subject(m) for m in await link.district.inbox(RECIPIENT)] == ["only once"]
