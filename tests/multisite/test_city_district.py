"""A city and a district Postroom (own domains, own databases) exchange mail through a faulty link.

The link is the fault-injecting TCP proxy (tests/faultproxy.py): it delays, cuts connections
in the middle of DATA and is offline for a while. The queue runs on an
injected clock, so retries happen when the test moves the clock and pokes
the worker; waiting is polling for a condition with a deadline.
"""

from __future__ import annotations

import email
import uuid
from collections import Counter
from dataclasses import dataclass

import aiosmtplib
import pytest

from tests.conftest import _create_pg_database
from tests.faultproxy import FaultProxy
from tests.protocol.smtp.support import PASSWORD, FakeClock, Instance, make_config, message, start_instance, wait_for

SENDER = "zhang.wei@city.test"
RECIPIENT = "wang@district.test"


@dataclass
class Sites:
    city: Instance
    district: Instance
    link: FaultProxy
    clock: FakeClock

    async def send(self, subject: str, *, to: str = RECIPIENT, size: int = 0) -> str:
        body = "".join(f"line {i:05d} of a long report\r\n" for i in range(size // 30)) or "Hello.\r\n"
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.city.port("submission"), start_tls=True,
                                 validate_certs=False, username=SENDER, password=PASSWORD,
                                 local_hostname="pc.city.test")
        await client.connect()
        errors, resp = await client.sendmail(SENDER, [to], message(subject, sender=SENDER, to=to, body=body))
        await client.quit()
        assert errors == {}
        return resp.rsplit(" ", 1)[1]

    async def district_subjects(self) -> Counter:
        return Counter(email.message_from_bytes(m)["Subject"] for m in await self.district.inbox(RECIPIENT))

    async def queue_states(self) -> list[tuple[str, int]]:
        return [(r.state, r.attempts) for e in await self.city.parts.queue.entries() for r in e.recipients]

    async def retry_later(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.city.parts.worker.poke()


@pytest.fixture
def district_url(request, tmp_path, storage_url):
    if storage_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/district.db"
    srv = request.getfixturevalue("pg")
    name = "d_" + uuid.uuid4().hex[:12]
    _create_pg_database(srv, name)
    return srv.url(name)


@pytest.fixture
async def sites(tmp_path, storage_url, district_url):
    clock = FakeClock()
    city = await start_instance(
        make_config(tmp_path / "city", storage_url, hostname="mail.city.test",
                    queue={"retry_delays": [60, 300], "warn_after": 900, "expire_after": 7200}),
        domains=("city.test",), clock=clock)
    district = await start_instance(make_config(tmp_path / "district", district_url, hostname="mail.district.test"),
                                    domains=("district.test",), clock=clock)
    link = FaultProxy("127.0.0.1", district.port("smtp"))
    await link.start()
    try:
        await city.add_user(SENDER)
        await district.add_user(RECIPIENT)
        await city.parts.routes.add("district.test", f"127.0.0.1:{link.port}", tls="opportunistic")
        _, txt = await city.parts.keys.generate("city.test", "s2025", 1024)
        await district.parts.keys.trust("city.test", "s2025", txt)  # no public DNS between them
        yield Sites(city, district, link, clock)
    finally:
        await link.close()
        await city.stop()
        await district.stop()


async def test_every_message_arrives_exactly_once_through_delay_cuts_and_an_outage(sites):
    s = sites
    # A slow link: delivered at once, DKIM-signed by the city and verified by the district.
    s.link.delay = 0.01
    for i in range(3):
        await s.send(f"slow-{i}")
    await wait_for(lambda: _count(s, 3), what="3 messages over the slow link")
    s.link.delay = 0.0
    [first, *_] = await s.district.inbox(RECIPIENT)
    assert b"Authentication-Results: mail.district.test;\r\n\tdkim=pass header.d=city.test header.s=s2025" in first
    assert first.count(b"Received: ") == 2  # one per hop: the city (submission), the district

    # Cut in the middle of DATA: the district must not keep a partial message; the city retries.
    # The city keeps idle connections for the next messages (delivery.outbound): drop them, so these
    # go over new connections, which the link cuts (an empty queue: every session is back in the pool).
    await wait_for(lambda: _states(s, []), what="an empty city queue")
    await s.city.parts.outbound.close()
    s.link.reset_after(12_000, direction="up", times=2)
    for i in range(2):
        await s.send(f"cut-{i}", size=40_000)
    await wait_for(lambda: s.link.counters.resets == 2, what="two cuts")
    await wait_for(lambda: _states(s, [("queued", 1)] * 2), what="both back in the queue after one attempt")
    assert sum((await s.district_subjects()).values()) == 3
    await s.retry_later(61)
    await wait_for(lambda: _count(s, 5), what="the cut messages after the retry")

    # An outage: connections refused for a while, then the link returns (its open connections go with it).
    await wait_for(lambda: _states(s, []), what="an empty city queue")
    s.link.set_offline(True)
    await s.city.parts.outbound.close()
    for i in range(3):
        await s.send(f"outage-{i}")
    await wait_for(lambda: _states(s, [("queued", 1)] * 3), what="first attempts refused")
    await s.retry_later(61)
    await wait_for(lambda: _states(s, [("queued", 2)] * 3), what="second attempts refused")
    s.link.set_offline(False)
    await s.retry_later(301)
    await wait_for(lambda: _count(s, 8), what="the outage messages after the link returned")

    subjects = await s.district_subjects()
    assert set(subjects.values()) == {1}, subjects  # exactly once each
    assert set(subjects) == {f"slow-{i}" for i in range(3)} | {"cut-0", "cut-1"} | {f"outage-{i}" for i in range(3)}
    await wait_for(lambda: _states(s, []), what="an empty city queue")


async def test_permanent_rejection_comes_back_to_the_sender_as_a_dsn(sites):
    s = sites
    qid = await s.send("to nobody", to="nobody@district.test")
    await wait_for(lambda: _inbox_count(s.city, SENDER, 1), what="the DSN in the sender's inbox")
    [dsn] = await s.city.inbox(SENDER)
    report = email.message_from_bytes(dsn)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    text = status.as_string()
    assert "Action: failed" in text and "Status: 5.1.1" in text and "Final-Recipient: rfc822; nobody@district.test" in text
    assert "550 5.1.1" in text  # the district's own reply, passed on
    assert "Undelivered Mail Returned to Sender" in str(email.header.make_header(
        email.header.decode_header(report["Subject"])))
    await wait_for(lambda: _states(s, []), what="an empty city queue")
    assert not await s.city.parts.queue.contains(qid)
    assert await s.district.inbox(RECIPIENT) == []


async def test_delay_warning_then_expiry_bounce_while_the_link_is_down(sites):
    s = sites
    s.link.set_offline(True)
    await s.send("never arrives")
    await wait_for(lambda: _states(s, [("queued", 1)]), what="first attempt refused")
    await s.retry_later(1000)  # past warn_after (900 s): one "delayed" notice
    await wait_for(lambda: _inbox_count(s.city, SENDER, 1), what="the delay warning")
    await s.retry_later(7200)  # past expire_after: give up and bounce
    await wait_for(lambda: _inbox_count(s.city, SENDER, 2), what="the expiry bounce")
    warning, bounce = (email.message_from_bytes(m) for m in await s.city.inbox(SENDER))
    assert "Action: delayed" in warning.as_string() and "Will-Retry-Until:" in warning.as_string()
    assert "Action: failed" in bounce.as_string() and "Status: 5.4.7" in bounce.as_string()
    await wait_for(lambda: _states(s, []), what="an empty city queue")


async def _count(s: Sites, n: int) -> bool:
    return sum((await s.district_subjects()).values()) >= n


async def _states(s: Sites, expected: list[tuple[str, int]]) -> bool:
    return sorted(await s.queue_states()) == sorted(expected)


async def _inbox_count(inst: Instance, address: str, n: int) -> bool:
    return len(await inst.inbox(address)) >= n
