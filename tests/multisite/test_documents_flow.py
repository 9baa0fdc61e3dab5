"""Dispatch to registration and back: the city sends a document to two districts, each registers it once, files it for its registrars and receipts it; sign-for travels back; forgeries are quarantined."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import datetime, timezone

import aiosmtplib
import pytest

from bridges.dispatch import Dispatcher
from bridges.docmail import document_message
from bridges.intake import INCOMING, RECEIPTS, Intake, IntakeConfig
from bridges.manifest import Document, describe_file
from delivery import dkim
from mailboxes.acl import shared_with
from mailboxes.documents import Documents
from tests.protocol.smtp.support import make_config, start_instance, wait_for

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 200
SENDER = "fawen@city.test"
ORGS = ("futian", "luohu")


def manifest(number: str = "深地税发〔2026〕7号", **over) -> Document:
    obj = {"issuing_organ": ["深圳市地方税务局"], "document_number": number, "title": "关于做好汇算清缴工作的通知",
           "main_recipients": ["futian"], "copy_recipients": ["luohu"], "date": "2026-12-03", "urgency": "特急",
           "attachments": [describe_file("通知.pdf", PDF).__dict__]}
    obj.update(over)
    return Document.from_json(obj)


class Site:
    def __init__(self, inst, org: str, domain: str) -> None:
        self.inst, self.org, self.domain = inst, org, domain
        self.docs = Documents(inst.mb.router.central, registration_pattern=f"{org}收〔{{year}}〕{{seq}}号")
        self.intake = Intake(inst.mb, self.docs, inst.ctx.extras["acceptor_verify"], inst.parts.submitter.submit,
                             IntakeConfig(org, f"documents@{domain}", (f"registrar@{domain}",) if org != "city" else (),
                                          hostname=f"mail.{domain}"))


async def make_site(tmp_path, org: str, domain: str, **sections) -> Site:
    inst = await start_instance(make_config(tmp_path / org, f"sqlite:///{tmp_path}/{org}.db", hostname=f"mail.{domain}",
                                            **sections), domains=(domain,))
    inst.ctx.extras["acceptor_verify"] = inst.parts.acceptor.verify
    await inst.add_user(f"documents@{domain}")
    await inst.add_user(f"registrar@{domain}")
    return Site(inst, org, domain)


@pytest.fixture
async def sites(tmp_path):
    city = await make_site(tmp_path, "city", "city.test")
    districts = [await make_site(tmp_path, org, f"{org}.test") for org in ORGS]
    all_sites = [city, *districts]
    try:
        await join(city, districts)
        yield city, districts
    finally:
        for s in all_sites:
            await s.intake.close()
            await s.inst.stop()


async def _direct(a: Site, b: Site) -> tuple[str, str]:
    return f"127.0.0.1:{b.inst.port('smtp')}", "opportunistic"


async def join(city: Site, districts: list[Site], link=_direct) -> None:
    """Partners both ways, with DKIM keys trusted and routes; `link(a, b)` gives the host:port and TLS mode of the
    route from a to b (or sets up another kind of route itself and gives None). Then the sender account, and every
    site's intake started."""
    txts = {s.domain: (await s.inst.parts.keys.generate(s.domain, "s2026", 1024))[1] for s in (city, *districts)}
    for d in districts:
        for a, b in ((city, d), (d, city)):
            route = await link(a, b)
            if route is not None:
                await a.inst.parts.routes.add(b.domain, route[0], tls=route[1])
        await d.inst.parts.keys.trust("city.test", "s2026", txts["city.test"])
        await city.inst.parts.keys.trust(d.domain, "s2026", txts[d.domain])
        await city.docs.add_partner(d.org, d.domain, name=f"{d.org}区税务局")
        await d.docs.add_partner("city", "city.test", name="市局")
    await city.inst.add_user(SENDER)
    for s in (city, *districts):
        await s.intake.start()


async def _folder(site: Site, name: str) -> list[bytes]:
    return await site.inst.inbox(f"documents@{site.domain}", name)


async def test_a_document_is_registered_once_at_each_district_and_every_receipt_reaches_the_city(sites):
    city, districts = sites
    dispatcher = Dispatcher(city.docs, city.inst.parts.submitter.submit, hostname="mail.city.test")
    sender = await city.inst.mb.directory.account(SENDER)
    await dispatcher.send(manifest(), {"通知.pdf": PDF}, sender=SENDER, account=sender)

    async def city_sees(state):
        return [t.state for t in await city.docs.tracking(number="深地税发〔2026〕7号")] == [state, state]

    await wait_for(lambda: city_sees("registered"), timeout=30, what="both registrations tracked at the city")
    for d in districts:
        [reg] = await d.docs.registrations()
        assert (reg.registration_number, reg.partner_org, reg.number) == (f"{d.org}收〔2026〕1号", "city",
                                                                          "深地税发〔2026〕7号")
        assert len(await _folder(d, INCOMING)) == 1 and await _folder(d, "INBOX") == []
        # The registrar is told, and sees the shared incoming folder.
        [note] = await wait_for(lambda: d.inst.inbox(f"registrar@{d.domain}"), what="the registrar's notice")
        assert "新收文" in email.message_from_bytes(note, policy=email.policy.default)["Subject"]
        registrar = await d.inst.mb.directory.account(f"registrar@{d.domain}")
        assert INCOMING in {sf.folder.name for sf in await shared_with(d.inst.mb.store, registrar)}
    tracking = {t.org: t for t in await city.docs.tracking(number="深地税发〔2026〕7号")}
    assert tracking["futian"].registration_number == "futian收〔2026〕1号" and tracking["futian"].delivered_at

    # The same document arriving again (a retry over a faulty link) is not registered again.
    [raw] = await _folder(districts[0], INCOMING)
    await _smtp(districts[0], raw, "documents@futian.test")
    await wait_for(lambda: _count(districts[0], INCOMING, 2), what="the repeat filed")
    assert len(await districts[0].docs.registrations()) == 1

    # Signing for it at Futian reaches the city.
    reg, signed = await districts[0].intake.sign("futian收〔2026〕1号", "李四")
    assert signed
    await wait_for(lambda: _signed(city), timeout=30, what="the sign-for receipt at the city")
    assert len(await _folder(city, RECEIPTS)) >= 5  # delivered + registered from both, signed from one


async def _signed(city: Site) -> bool:
    t = {x.org: x for x in await city.docs.tracking(number="深地税发〔2026〕7号")}
    return t["futian"].state == "signed" and t["futian"].signed_by == "李四" and t["luohu"].state == "registered"


async def _count(site: Site, folder: str, n: int) -> bool:
    return len(await _folder(site, folder)) == n


async def _smtp(site: Site, raw: bytes, to: str, mail_from: str = "fawen@city.test") -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=site.inst.port("smtp"), start_tls=False)
    await client.connect()
    errors, _ = await client.sendmail(mail_from, [to], raw)
    await client.quit()
    assert errors == {}


async def test_forged_unsigned_foreign_and_altered_documents_are_quarantined_and_never_registered(sites):
    city, districts = sites
    futian = districts[0]
    doc = manifest("深地税发〔2026〕20号")
    raw = document_message(doc, {"通知.pdf": PDF}, sender=SENDER, to="documents@futian.test",
                           now=datetime(2026, 12, 4, tzinfo=timezone.utc),
                           hostname="mail.city.test")
    city_key = await city.inst.parts.keys.signing_key("city.test")
    evil_pem, evil_txt = dkim.generate_key("evil.test", "s1", 1024)
    await futian.inst.parts.keys.trust("evil.test", "s1", evil_txt)  # a signer the district knows, not a partner
    other_pem, _ = dkim.generate_key("city.test", "s2026", 1024)  # the city's selector, someone else's key

    def signed(data: bytes, domain: str, selector: str, pem: bytes) -> bytes:
        return dkim.sign(data, domain, selector, pem) + data

    good = signed(raw, "city.test", "s2026", city_key.private_pem)
    altered = good.replace(b"\r\n\r\n", b"\r\nX-Extra: 1\r\n\r\n", 1)  # harmless header...
    manifest_b64 = base64.encodebytes(doc.to_json()).replace(b"\n", b"\r\n")
    forged_manifest = base64.encodebytes(
        doc.to_json().replace("关于做好".encode(), "关于取消".encode())).replace(b"\n", b"\r\n")
    assert manifest_b64 in altered
    altered = altered.replace(manifest_b64, forged_manifest)  # ...and a manifest changed after signing
    cases = {
        "unsigned": raw,
        "wrong key": signed(raw, "city.test", "s2026", other_pem),
        "non-partner signer": signed(raw, "evil.test", "s1", evil_pem),
        "manifest altered after signing": altered,
    }
    for name, data in cases.items():
        await _smtp(futian, data, "documents@futian.test")
    await wait_for(lambda: _quarantined(futian, len(cases)), timeout=30, what="every forgery quarantined")
    await wait_for(lambda: _count(futian, "INBOX", 0), what="the intake done")  # the row is written before the expunge
    assert await futian.docs.registrations() == []
    assert await _folder(futian, INCOMING) == [] and await _folder(futian, "INBOX") == []
    reasons = [r for _, _, _, r, _ in await futian.docs.quarantined()]
    assert sum("no passing DKIM signature of a partner" in r for r in reasons) == 4, reasons
    assert any("d=evil.test" in r for r in reasons)
    # Nothing went back to the city: a forger learns nothing.
    assert await _folder(city, "INBOX") == [] and await _folder(city, RECEIPTS) == []
    # The genuine message, signed with the city's key, is registered.
    await _smtp(futian, good, "documents@futian.test")
    await wait_for(lambda: futian.docs.registrations(), timeout=30, what="the genuine document registered")


async def _quarantined(site: Site, n: int) -> bool:
    return len(await site.docs.quarantined()) == n


async def test_two_intakes_of_one_site_register_and_receipt_once_and_the_second_takes_over(sites):
    """Worker processes and nodes each start an intake for the site; the lease lets one handle the INBOX, so each
    document is receipted once (not once per process), and when that one stops the other carries on."""
    from mailboxes.leases import Leases

    city, districts = sites
    futian = districts[0]
    leases = Leases(futian.inst.mb.router.central)
    first = Intake(futian.inst.mb, futian.docs, futian.inst.ctx.extras["acceptor_verify"],
                   futian.inst.parts.submitter.submit, futian.intake.cfg, leases=leases, holder="w1")
    second = Intake(futian.inst.mb, futian.docs, futian.inst.ctx.extras["acceptor_verify"],
                    futian.inst.parts.submitter.submit, futian.intake.cfg, leases=leases, holder="w2")
    await futian.intake.close()  # the fixture's unleased intake would handle everything itself
    await first.start()
    await wait_for(lambda: _holds(leases, "w1"), what="the first intake holding the lease")
    await second.start()
    try:
        dispatcher = Dispatcher(city.docs, city.inst.parts.submitter.submit, hostname="mail.city.test")
        sender = await city.inst.mb.directory.account(SENDER)
        await dispatcher.send(manifest(main_recipients=["futian"], copy_recipients=[]), {"通知.pdf": PDF},
                              sender=SENDER, account=sender)
        await wait_for(lambda: _count(city, RECEIPTS, 2), what="delivered and registered receipts at the city")
        assert not second.holding and len(await futian.docs.registrations()) == 1
        await first.close()  # a clean stop hands the lease over at once
        await dispatcher.send(manifest("深地税发〔2026〕8号", main_recipients=["futian"], copy_recipients=[]),
                              {"通知.pdf": PDF}, sender=SENDER, account=sender)
        await wait_for(lambda: _count(city, RECEIPTS, 4), what="the second document receipted by the other intake")
        assert second.holding and len(await futian.docs.registrations()) == 2
        assert len(await _folder(city, RECEIPTS)) == 4  # two per document, none twice
    finally:
        await first.close()
        await second.close()


async def _holds(leases, holder: str) -> bool:
    got = await leases.holder("documents-intake")
    return got is not None and got[0] == holder
