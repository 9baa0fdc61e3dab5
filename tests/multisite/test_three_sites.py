"""A city and two districts, each its own Postroom and database, joined through fault-injecting WAN links (issue 12).

Futian takes SMTP from the city; Luohu cannot take inbound connections and fetches its mail from the
city over IMAP (pull mode), sending its receipts back by SMTP. One document dispatched to both
while the links misbehave: the upload to Futian is cut mid-transfer, then its 250 is lost after
Futian committed (so the city sends it again), a receipt back to the city is cut, Luohu's link is
down for a while and then resets in the middle of a fetch. Each district registers the document
exactly once, and every receipt and sign-for reaches the city's tracker. Then Futian's link goes
down while a routine batch and an urgent document wait for it: when it answers again the urgent
document is delivered first.
"""

from __future__ import annotations

import email
import email.policy

import pytest

from bridges import pull
from bridges.dispatch import Dispatcher
from bridges.intake import INCOMING
from bridges.pullclient import PullError
from delivery.pullroute import new_secret
from delivery.submit import Submission
from mailserver.imap.server import start as start_imap
from tests.faultproxy import FaultProxy
from tests.protocol.smtp.support import wait_for

from .test_documents_flow import PDF, SENDER, Site, join, make_site, manifest

NUMBER = "深地税发〔2026〕31号"
URGENT = "深地税发〔2026〕32号"
ONE_WAY_DELAY = 0.02  # seconds each way on every link: small, so the test stays quick
FAST = {"retry_delays": [1], "probe_delays": [1]}  # a failed link is tried again after a second
PULL_ACCOUNT = "pull-luohu@city.test"
ROUTINE = 10  # routine messages waiting with the urgent document


@pytest.fixture
async def wan(tmp_path):
    """The three sites; links[(a, b)] is the proxy a's connections to b go through (plain SMTP, so faults can aim;
    ("luohu", "city-imap") carries Luohu's fetches)."""
    city = await make_site(tmp_path, "city", "city.test", queue=FAST, listen={"imaps": "127.0.0.1:0"})
    city.inst.services += await start_imap(city.inst.ctx)
    links: dict[tuple[str, str], FaultProxy] = {}
    imap = links[("luohu", "city-imap")] = FaultProxy("127.0.0.1", city.inst.ctx.extras["imap"].addresses["imaps"][1],
                                                       delay=ONE_WAY_DELAY)
    secret = new_secret()
    futian = await make_site(tmp_path, "futian", "futian.test", queue=FAST)
    luohu = await make_site(tmp_path, "luohu", "luohu.test", queue=FAST, pull={
        "upstream": f"127.0.0.1:{await imap.start()}", "account": PULL_ACCOUNT, "password": secret,
        "ca_file": str(city.inst.ctx.config.tls_cert), "interval": 0})

    async def through_proxy(a: Site, b: Site) -> tuple[str, str] | None:
        if (a.org, b.org) == ("city", "luohu"):  # held at the city for Luohu to fetch
            await city.inst.add_user(PULL_ACCOUNT, password=secret)
            await city.inst.parts.routes.add_pull("luohu.test", PULL_ACCOUNT, secret)
            return None
        proxy = links[(a.org, b.org)] = FaultProxy("127.0.0.1", b.inst.port("smtp"), delay=ONE_WAY_DELAY)
        return f"127.0.0.1:{await proxy.start()}", "none"

    try:
        await join(city, [futian, luohu], through_proxy)
        yield city, (futian, luohu), links, pull.build(luohu.inst.mb, luohu.inst.ctx.config, luohu.inst.parts)
    finally:
        for s in (city, futian, luohu):
            await s.intake.close()
            await s.inst.stop()
        for proxy in links.values():
            await proxy.close()


async def _states(city: Site, number: str = NUMBER) -> dict[str, str]:
    return {t.org: t.state for t in await city.docs.tracking(number=number)}


async def _fails(fetcher) -> None:
    with pytest.raises(PullError):
        await fetcher.fetch()


async def test_a_document_crosses_faulty_links_and_a_pull_district_registered_once_each_then_urgent_goes_first(wan):
    city, (futian, luohu), links, fetcher = wan
    # Futian's link: the first upload is cut mid-DATA; on the second Futian commits but its 250 is lost.
    links[("city", "futian")].reset_after(3000, direction="up")
    links[("city", "futian")].reset_when(b"250 2.0.0", direction="down")
    links[("futian", "city")].reset_after(400, direction="up")  # and one receipt back is cut
    links[("luohu", "city-imap")].set_offline(True)  # Luohu's dial-up line is down

    dispatcher = Dispatcher(city.docs, city.inst.parts.submitter.submit, hostname="mail.city.test")
    sender = await city.inst.mb.directory.account(SENDER)
    await dispatcher.send(manifest(NUMBER), {"通知.pdf": PDF}, sender=SENDER, account=sender)

    async def futian_registered():
        return (await _states(city)).get("futian") == "registered"

    await wait_for(futian_registered, timeout=60, what="Futian's registration at the city through the faults")
    assert links[("city", "futian")].counters.resets >= 2

    async def futian_has_two_copies():
        return len(await futian.inst.inbox("documents@futian.test", INCOMING)) == 2

    # Futian got the document twice (the city could not know the second upload had arrived): registered once.
    await wait_for(futian_has_two_copies, timeout=60, what="the city's second upload filed at Futian")
    [reg] = await futian.docs.registrations()
    assert reg.registration_number == "futian收〔2026〕1号"

    # Luohu's copy waits at the city; Luohu's fetches fail while its line is down, then one resets mid-FETCH.
    await wait_for(lambda: city.inst.inbox(PULL_ACCOUNT), what="the document held at the city for Luohu")
    await _fails(fetcher)
    links[("luohu", "city-imap")].set_offline(False)
    links[("luohu", "city-imap")].reset_after(20_000, direction="down")
    await _fails(fetcher)
    assert await luohu.docs.registrations() == []
    result = await fetcher.fetch()
    assert result.delivered == 1 and await city.inst.inbox(PULL_ACCOUNT) == []

    async def both_registered():
        return await _states(city) == {"futian": "registered", "luohu": "registered"}

    await wait_for(both_registered, timeout=60, what="Luohu's registration, pushed back by SMTP")
    [reg] = await luohu.docs.registrations()
    assert reg.registration_number == "luohu收〔2026〕1号"

    # Both sign for it; the sign-fors travel back over the same links.
    for d in (futian, luohu):
        _, signed = await d.intake.sign(f"{d.org}收〔2026〕1号", f"{d.org}登记员")
        assert signed

    async def both_signed():
        return await _states(city) == {"futian": "signed", "luohu": "signed"}

    await wait_for(both_signed, timeout=60, what="both sign-fors at the city")
    tracked = {t.org: t for t in await city.docs.tracking(number=NUMBER)}
    assert tracked["luohu"].signed_by == "luohu登记员" and tracked["futian"].registration_number == "futian收〔2026〕1号"
    assert all(t.delivered_at and t.registered_at and t.signed_at for t in tracked.values())
    for d in (futian, luohu):
        assert len(await d.docs.registrations()) == 1
    assert links[("futian", "city")].counters.resets == 1  # the cut receipt was sent again

    # Futian's link goes down with a routine batch queued, then an urgent document behind it.
    await futian.inst.add_user("staff@futian.test")
    tried = links[("city", "futian")].counters.attempts
    links[("city", "futian")].set_offline(True)
    for i in range(ROUTINE):
        data = (f"From: <{SENDER}>\r\nTo: <staff@futian.test>\r\nSubject: routine {i}\r\n"
                f"Message-ID: <routine-{i}@city.test>\r\n\r\nA routine notice.\r\n").encode()
        out = await city.inst.parts.submitter.submit(Submission(SENDER, ("staff@futian.test",), data))
        assert out.accepted
    await links[("city", "futian")].wait_attempts(tried + 1, timeout=60)  # refused: the city marks the link down
    await dispatcher.send(manifest(URGENT, copy_recipients=[]), {"通知.pdf": PDF}, sender=SENDER, account=sender)
    links[("city", "futian")].set_offline(False)

    async def all_there():
        return (len(await futian.inst.inbox("staff@futian.test")) == ROUTINE
                and (await _states(city, URGENT)).get("futian") == "registered")

    await wait_for(all_there, timeout=60, what="the routine batch and the urgent document at Futian")
    staff = await futian.inst.mb.directory.account("staff@futian.test")
    routine = await futian.inst.mb.store.messages((await futian.inst.mb.store.folder(staff, "INBOX")).ref)
    docs = await futian.inst.mb.directory.account("documents@futian.test")
    filed = await futian.inst.mb.store.messages((await futian.inst.mb.store.folder(docs, INCOMING)).ref)
    raws = await futian.inst.inbox("documents@futian.test", INCOMING)
    [urgent] = [m for m, raw in zip(filed, raws) if "32号" in str(
        email.message_from_bytes(raw, policy=email.policy.default)["Subject"])]
    assert urgent.internal_date < min(m.internal_date for m in routine)  # queued last, delivered first
