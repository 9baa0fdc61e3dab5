"""A city and two districts, each its own Postroom and database, joined through fault-injecting WAN links.

One document dispatched to both districts while the links misbehave: the upload to one district is
cut mid-transfer, then its 250 is lost after the district committed (so the city sends it again),
a receipt back to the city is cut, and the other district is offline for a while. Each district
registers the document exactly once, and every receipt and sign-for reaches the city's tracker.
"""

from __future__ import annotations

import pytest

from bridges.dispatch import Dispatcher
from bridges.intake import INCOMING
from tests.faultproxy import FaultProxy
from tests.protocol.smtp.support import wait_for

from .test_documents_flow import PDF, SENDER, Site, join, make_site, manifest

NUMBER = "深地税发〔2026〕31号"
ONE_WAY_DELAY = 0.02  # seconds each way on every link: small, so the test stays quick
FAST_RETRIES = {"retry_delays": [1]}  # the city tries a failed link again after a second


@pytest.fixture
async def wan(tmp_path):
    """The three sites; links[(a, b)] is the proxy a's mail to b goes through (plain SMTP, so faults can aim)."""
    city = await make_site(tmp_path, "city", "city.test", queue=FAST_RETRIES)
    districts = [await make_site(tmp_path, org, f"{org}.test", queue=FAST_RETRIES) for org in ("futian", "luohu")]
    links: dict[tuple[str, str], FaultProxy] = {}

    async def through_proxy(a: Site, b: Site) -> tuple[str, str]:
        proxy = links[(a.org, b.org)] = FaultProxy("127.0.0.1", b.inst.port("smtp"), delay=ONE_WAY_DELAY)
        return f"127.0.0.1:{await proxy.start()}", "none"

    try:
        await join(city, districts, through_proxy)
        yield city, districts, links
    finally:
        for s in (city, *districts):
            await s.intake.close()
            await s.inst.stop()
        for proxy in links.values():
            await proxy.close()


async def _states(city: Site) -> dict[str, str]:
    return {t.org: t.state for t in await city.docs.tracking(number=NUMBER)}


async def test_a_document_crosses_faulty_links_and_is_registered_once_at_each_district(wan):
    city, (futian, luohu), links = wan
    # Futian's link: the first upload is cut mid-DATA; on the second the district commits but its 250 is lost.
    links[("city", "futian")].reset_after(3000, direction="up")
    links[("city", "futian")].reset_when(b"250 2.0.0", direction="down")
    links[("futian", "city")].reset_after(400, direction="up")  # and one receipt back is cut
    # Luohu is offline both ways.
    for pair in (("city", "luohu"), ("luohu", "city")):
        links[pair].set_offline(True)

    dispatcher = Dispatcher(city.docs, city.inst.parts.submitter.submit, hostname="mail.city.test")
    sender = await city.inst.mb.directory.account(SENDER)
    await dispatcher.send(manifest(NUMBER), {"通知.pdf": PDF}, sender=SENDER, account=sender)

    async def futian_registered():
        return (await _states(city)).get("futian") == "registered"

    await wait_for(futian_registered, timeout=60, what="Futian's registration at the city through the faults")
    assert links[("city", "futian")].counters.resets >= 2
    # Futian got the document twice (the city could not know the second upload had arrived): registered once.
    async def futian_has_two_copies():
        return len(await futian.inst.inbox("documents@futian.test", INCOMING)) == 2

    await wait_for(futian_has_two_copies, timeout=60, what="the city's second upload filed at Futian")
    [reg] = await futian.docs.registrations()
    assert reg.registration_number == "futian收〔2026〕1号"

    # Luohu comes back after the city has tried it at least twice.
    await links[("city", "luohu")].wait_attempts(2, timeout=60)
    assert (await _states(city))["luohu"] in ("queued", "failed") and await luohu.docs.registrations() == []
    for pair in (("city", "luohu"), ("luohu", "city")):
        links[pair].set_offline(False)

    async def both_registered():
        return await _states(city) == {"futian": "registered", "luohu": "registered"}

    await wait_for(both_registered, timeout=60, what="Luohu's registration once its link is back")
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
    assert links[("city", "luohu")].counters.refused >= 2
