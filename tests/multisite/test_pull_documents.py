"""A document dispatched by the city to a district in pull mode: fetched through a faulty link, registered there once, and its receipts pushed back to the city by SMTP."""

from __future__ import annotations

import pytest

from bridges import pull
from bridges.dispatch import Dispatcher
from bridges.intake import INCOMING
from bridges.pullclient import PullError
from delivery.pullroute import new_secret
from mailserver.imap.server import start as start_imap
from tests.faultproxy import FaultProxy
from tests.protocol.smtp.support import make_config, start_instance, wait_for

from .test_documents_flow import PDF, SENDER, Site, manifest

PULL_ACCOUNT = "pull-futian@city.test"


async def _filed(site: Site) -> bool:
    return len(await site.inst.inbox("documents@futian.test", INCOMING)) == 1
NUMBER = "深地税发〔2026〕7号"


async def test_a_document_to_a_pull_mode_district_is_registered_once_and_its_receipts_reach_the_city(tmp_path):
    secret = new_secret()
    city_inst = await start_instance(make_config(tmp_path / "city", f"sqlite:///{tmp_path}/city.db",
                                                 hostname="mail.city.test", listen={"imaps": "127.0.0.1:0"}),
                                     domains=("city.test",))
    city_inst.services += await start_imap(city_inst.ctx)
    proxy = FaultProxy("127.0.0.1", city_inst.ctx.extras["imap"].addresses["imaps"][1])
    await proxy.start()
    d_inst = await start_instance(make_config(
        tmp_path / "futian", f"sqlite:///{tmp_path}/futian.db", hostname="mail.futian.test",
        pull={"upstream": f"127.0.0.1:{proxy.port}", "account": PULL_ACCOUNT, "password": secret,
              "ca_file": str(city_inst.ctx.config.tls_cert), "interval": 0}), domains=("futian.test",))
    sites = []
    try:
        for inst, org, domain in ((city_inst, "city", "city.test"), (d_inst, "futian", "futian.test")):
            inst.ctx.extras["acceptor_verify"] = inst.parts.acceptor.verify
            await inst.add_user(f"documents@{domain}")
            await inst.add_user(f"registrar@{domain}")
            sites.append(Site(inst, org, domain))
        city, futian = sites
        txts = {s.domain: (await s.inst.parts.keys.generate(s.domain, "s2026", 1024))[1] for s in sites}
        # The city holds Futian's mail for it to fetch; Futian's receipts go to the city by SMTP (push).
        await city.inst.add_user(PULL_ACCOUNT, password=secret)
        await city.inst.parts.routes.add_pull("futian.test", PULL_ACCOUNT, secret)
        await futian.inst.parts.routes.add("city.test", f"127.0.0.1:{city.inst.port('smtp')}", tls="opportunistic")
        await futian.inst.parts.keys.trust("city.test", "s2026", txts["city.test"])
        await city.inst.parts.keys.trust("futian.test", "s2026", txts["futian.test"])
        await city.docs.add_partner("futian", "futian.test", name="福田区税务局")
        await futian.docs.add_partner("city", "city.test", name="市局")
        await city.inst.add_user(SENDER)
        for s in sites:
            await s.intake.start()
        fetcher = pull.build(futian.inst.mb, futian.inst.ctx.config, futian.inst.parts)

        dispatcher = Dispatcher(city.docs, city.inst.parts.submitter.submit, hostname="mail.city.test")
        sender = await city.inst.mb.directory.account(SENDER)
        await dispatcher.send(manifest(copy_recipients=[]), {"通知.pdf": PDF}, sender=SENDER, account=sender)
        await wait_for(lambda: city.inst.inbox(PULL_ACCOUNT), what="the document held for Futian")

        # First round: the link resets in the middle of the FETCH. Second: committed, then cut before EXPUNGE.
        proxy.reset_after(20_000, direction="down")
        with pytest.raises(PullError):
            await fetcher.fetch()
        assert await futian.docs.registrations() == []

        async def cut(uids):
            proxy.set_offline(True)
            proxy.set_offline(False)

        fetcher.after_commit = cut
        with pytest.raises(PullError):
            await fetcher.fetch()
        fetcher.after_commit = None
        assert len(await city.inst.inbox(PULL_ACCOUNT)) == 1  # still at the city: the EXPUNGE never arrived
        r = await fetcher.fetch()
        assert (r.delivered, r.duplicates, r.removed) == (0, 1, 1)
        assert await city.inst.inbox(PULL_ACCOUNT) == []

        [reg] = await wait_for(futian.docs.registrations, timeout=30, what="the document registered at Futian")
        assert (reg.registration_number, reg.partner_org, reg.number) == ("futian收〔2026〕1号", "city", NUMBER)
        await wait_for(lambda: _filed(futian), what="the document filed in 收文")  # filed after the registration row

        async def city_sees(state: str) -> bool:
            return [t.state for t in await city.docs.tracking(number=NUMBER)] == [state]

        await wait_for(lambda: city_sees("registered"), timeout=30, what="the registration receipt at the city")
        await futian.intake.sign("futian收〔2026〕1号", "李四")
        await wait_for(lambda: city_sees("signed"), timeout=30, what="the sign-for receipt at the city")
        assert len(await futian.docs.registrations()) == 1
    finally:
        for s in sites:
            await s.intake.close()
        await d_inst.stop()
        await city_inst.stop()  # its IMAP listener ends the sessions the proxy still carries
        await proxy.close()
