"""The city dispatches an official document to two districts (own servers, own databases): each gets one DKIM-signed document message it can read back exactly; a number is dispatched once."""

from __future__ import annotations

import email
import email.policy

import pytest

from bridges.dispatch import Dispatcher
from bridges.docservice import track_queue
from bridges.docmail import read_document
from bridges.manifest import Document, ManifestError, describe_file
from mailboxes.documents import Documents
from tests.protocol.smtp.support import make_config, start_instance, wait_for

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 400  # 100 KB
SENDER = "fawen@city.test"


def manifest(number: str = "深地税发〔2026〕7号", **over) -> Document:
    obj = {"issuing_organ": ["深圳市地方税务局"], "document_number": number, "title": "关于做好汇算清缴工作的通知",
           "main_recipients": ["futian"], "copy_recipients": ["luohu"], "date": "2026-12-03", "urgency": "加急",
           "signers": ["张三"], "attachments": [describe_file("通知.pdf", PDF).__dict__]}
    obj.update(over)
    return Document.from_json(obj)


@pytest.fixture
async def sites(tmp_path):
    city = await start_instance(make_config(tmp_path / "city", f"sqlite:///{tmp_path}/city.db",
                                            hostname="mail.city.test"), domains=("city.test",))
    districts = {}
    for org in ("futian", "luohu"):
        districts[org] = await start_instance(
            make_config(tmp_path / org, f"sqlite:///{tmp_path}/{org}.db", hostname=f"mail.{org}.test"),
            domains=(f"{org}.test",))
        await districts[org].add_user(f"documents@{org}.test")
        await city.parts.routes.add(f"{org}.test", f"127.0.0.1:{districts[org].port('smtp')}", tls="opportunistic")
    await city.add_user(SENDER)
    _, txt = await city.parts.keys.generate("city.test", "s2026", 1024)
    for d in districts.values():
        await d.parts.keys.trust("city.test", "s2026", txt)
    docs = Documents(city.mb.router.central)
    city.parts.worker.settled_hooks.append(track_queue(docs))  # as `postroom serve` wires it (docservice.start)
    await docs.add_partner("futian", "futian.test", name="福田区税务局")
    await docs.add_partner("luohu", "luohu.test", name="罗湖区税务局")
    try:
        yield city, districts, Dispatcher(docs, city.parts.submitter.submit, hostname="mail.city.test"), docs
    finally:
        for s in (city, *districts.values()):
            await s.stop()


async def test_a_document_reaches_each_district_once_signed_and_readable_and_its_number_cannot_be_reused(sites):
    city, districts, dispatcher, docs = sites
    sender = await city.mb.directory.account(SENDER)
    out = await dispatcher.send(manifest(), {"通知.pdf": PDF}, sender=SENDER, account=sender)
    assert out.refused == () and set(out.replies) == {"futian", "luohu"}
    for org, site in districts.items():
        got = await wait_for(lambda: site.inbox(f"documents@{org}.test"), what=f"the document at {org}")
        [raw] = got
        assert b"dkim=pass header.d=city.test" in raw  # signed by the city, verified by the district
        received = read_document(raw)
        assert received.document == manifest() and received.files == {"通知.pdf": PDF}
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["Subject"] == "[加急] 关于做好汇算清缴工作的通知（深地税发〔2026〕7号）"
        assert "主送：福田区税务局" in msg.get_body(("plain",)).get_content()

    async def all_sent():
        return [(t.org, t.state) for t in await docs.tracking(number="深地税发〔2026〕7号")] == [
            ("futian", "sent"), ("luohu", "sent")]

    await wait_for(all_sent, what="both messages tracked as sent by the queue")
    tracking = await docs.tracking(number="深地税发〔2026〕7号")
    assert all(t.message_id.startswith("<") and t.sent_at for t in tracking)
    # The same number again is refused, and nothing more is sent.
    with pytest.raises(ManifestError, match="已发过") as ei:
        await dispatcher.send(manifest(title="另一个标题"), {"通知.pdf": PDF}, sender=SENDER, account=sender)
    assert ei.value.field == "document_number"
    # Unknown organisations and files that do not match are refused before anything is claimed.
    with pytest.raises(ManifestError) as ei:
        await dispatcher.send(manifest("深地税发〔2026〕8号", copy_recipients=["nanshan"]), {"通知.pdf": PDF},
                              sender=SENDER, account=sender)
    assert ei.value.field == "copy_recipients" and "nanshan" in ei.value.message
    with pytest.raises(ManifestError):
        await dispatcher.send(manifest("深地税发〔2026〕8号"), {"通知.pdf": PDF[:-1]}, sender=SENDER, account=sender)
    assert not await docs.dispatched("深圳市地方税务局", 2026, "深地税发〔2026〕8号")
    for org, site in districts.items():
        assert len(await site.inbox(f"documents@{org}.test")) == 1


async def test_a_sender_cannot_dispatch_under_another_address(sites):
    city, _, dispatcher, docs = sites
    someone = await city.add_user("someone@city.test")
    out = await dispatcher.send(manifest("深地税发〔2026〕9号"), {"通知.pdf": PDF}, sender=SENDER, account=someone)
    # submit() checks the sender like any submission: both messages refused, and the tracker says so.
    assert set(out.refused) == {"futian", "luohu"} and all(r.startswith("5") for r in out.replies.values())
    # Nothing was sent, so the number is not used up: the right sender dispatches it.
    assert not await docs.dispatched("深圳市地方税务局", 2026, "深地税发〔2026〕9号")
    out = await dispatcher.send(manifest("深地税发〔2026〕9号"), {"通知.pdf": PDF}, sender=SENDER,
                                account=await city.mb.directory.account(SENDER))
    assert out.refused == ()
