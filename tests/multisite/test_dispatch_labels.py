"""The document bridge labels a document with a 密级 (issue 13): its message asks for [labels] classified."""

from __future__ import annotations

from bridges.dispatch import Dispatcher
from tests.multisite.test_dispatch import PDF, SENDER, manifest, sites  # noqa: F401 (the fixture)


async def test_a_classified_document_carries_the_configured_label(sites):  # noqa: F811
    city, _districts, _dispatcher, docs = sites
    seen = []

    async def submit(sub):
        seen.append(sub.data)
        return await city.parts.submitter.submit(sub)

    dispatcher = Dispatcher(docs, submit, hostname="mail.city.test", classified_label="敏感")
    sender = await city.mb.directory.account(SENDER)
    await dispatcher.send(manifest(), {"通知.pdf": PDF}, sender=SENDER, account=sender)
    assert seen and not any(b"X-Postroom-Classification" in d for d in seen)  # unclassified: the default
    seen.clear()
    await dispatcher.send(manifest("深地税发〔2026〕8号", classification="秘密", copy_number="000001"),
                          {"通知.pdf": PDF}, sender=SENDER, account=sender)
    assert len(seen) == 2 and all(d.startswith("X-Postroom-Classification: 敏感\r\n".encode()) for d in seen)
