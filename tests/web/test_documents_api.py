"""The official-documents JSON API over real HTTP: dispatch (multipart and JSON), tracking, incoming documents and 签收, who may call what."""

from __future__ import annotations

import base64
import email
import json
from email import policy

import aiohttp
import pytest
from sqlalchemy import select

from bridges import docapi
from bridges.manifest import RECEIPT_MEDIA_TYPE, Receipt
from mailboxes import schema as t
from mailboxes.webhookendpoints import WebhookEndpoints, new_secret
from tests.protocol.smtp.support import wait_for
from tests.support.webhook_receiver import Receiver

from . import openapi_check
from .documents import PDF, documents_server, manifest, register_incoming, setup_documents
from .people import Api


@pytest.fixture
def web(tmp_path):
    srv = documents_server(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shared_documents(tmp_path_factory):
    """One server with its tokens for the refused cases (each checks that nothing was claimed)."""
    srv = documents_server(tmp_path_factory.mktemp("documents")).start()
    try:
        yield srv, setup_documents(srv)
    finally:
        srv.stop()


def _api(web, token: str) -> Api:
    return Api(web, token, check=openapi_check.validate_response)


async def _multipart(web, token: str, document, files: dict[str, bytes]):
    form = aiohttp.FormData()
    form.add_field("document", json.dumps(document, ensure_ascii=False), content_type="application/json")
    for name, data in files.items():
        form.add_field(name, data, filename=name, content_type="application/pdf")
    async with aiohttp.ClientSession() as s, s.post(web.url + "/api/v1/documents", data=form,
                                                    headers={"Authorization": f"Bearer {token}"}) as r:
        body = await r.json(content_type=None)
    openapi_check.validate_response("POST", "/documents", r, body)
    return r.status, body


async def test_a_multipart_dispatch_is_queued_per_organisation_and_tracked(web):
    tok = setup_documents(web)
    status, body = await _multipart(web, tok.dispatcher, manifest(), {"通知.pdf": PDF})
    assert status == 201, body
    assert body["number"] == "深地税发〔2026〕7号" and body["urgency"] == "特急" and body["refused"] == []
    [rec] = body["recipients"]
    assert rec["org"] == "futian" and rec["state"] == "queued" and rec["queued"]
    assert rec["delivered"] is rec["registered"] is rec["signed"] is None
    api = _api(web, tok.dispatcher)
    status, one, _ = await api("GET", f"/documents/{body['id']}")
    assert status == 200 and one["recipients"][0]["org"] == "futian"
    status, listing, _ = await api("GET", "/documents")
    assert status == 200 and [d["id"] for d in listing["documents"]] == [body["id"]]
    # the same number again: 409 naming it, and nothing more queued
    status, again = await _multipart(web, tok.dispatcher, manifest(), {"通知.pdf": PDF})
    assert status == 409 and again["field"] == "document.document_number"
    assert again["number"] == "深地税发〔2026〕7号"


async def test_a_json_dispatch_with_base64_files_and_tracking_steps(web):
    tok = setup_documents(web)
    api = _api(web, tok.admin)
    doc = {"document": manifest("深地税发〔2026〕8号", urgency="加急"),
           "files": {"a.pdf": base64.b64encode(PDF).decode()}}
    status, body, r = await api("POST", "/documents", doc)
    assert status == 201 and r.headers["Location"] == f"/api/v1/documents/{body['id']}"

    async def receipts():
        from mailboxes.documents import Documents

        d = Documents(web.mb.router.central)
        await d.track("深地税发〔2026〕8号", "futian", "delivered")
        await d.track("深地税发〔2026〕8号", "futian", "registered", registration_number="福收〔2026〕1号")
        await d.track("深地税发〔2026〕8号", "futian", "signed", signed_by="王登记")
    web.run(receipts())
    status, one, _ = await api("GET", f"/documents/{body['id']}")
    [rec] = one["recipients"]
    assert rec["state"] == "signed" and rec["registration_number"] == "福收〔2026〕1号"
    assert rec["signed_by"] == "王登记" and rec["delivered"] <= rec["registered"] <= rec["signed"]


@pytest.mark.parametrize("change, field", [
    ({"document": manifest(title="")}, "document.title"),
    ({"document": manifest(urgency="很急")}, "document.urgency"),
    ({"document": manifest(document_number="第七号")}, "document.document_number"),
    ({"document": manifest(main_recipients=["nowhere"])}, "document.main_recipients"),
    ({"document": manifest(), "files": {"a.pdf": "not base64!"}}, "files.a.pdf"),
    ({"document": manifest(), "files": []}, "files"),
    ({"files": {}}, "document"),
    ({"document": manifest(attachments=[{"name": "a.pdf", "size": 3, "sha256": "0" * 64}]),
      "files": {"a.pdf": base64.b64encode(b"abc").decode()}}, "document.attachments"),
])
async def test_every_bad_field_is_a_problem_naming_it(shared_documents, change, field):
    web, tok = shared_documents
    status, body, r = await _api(web, tok.dispatcher)("POST", "/documents", change)
    assert status == 400 and r.content_type == "application/problem+json"
    assert body["field"].startswith(field), body
    status, listing, _ = await _api(web, tok.dispatcher)("GET", "/documents")
    assert listing["documents"] == []  # nothing was claimed


async def test_bodies_over_the_caps_are_413(web, monkeypatch):
    tok = setup_documents(web)
    monkeypatch.setattr(docapi, "MAX_DISPATCH_BYTES", 4096)
    status, body = await _multipart(web, tok.dispatcher, manifest(), {"big.pdf": PDF})
    assert status == 413 and body["field"] == "files"
    monkeypatch.setattr(docapi, "MAX_JSON_DISPATCH_BYTES", 4096)
    status, body, _ = await _api(web, tok.dispatcher)(
        "POST", "/documents", {"document": manifest(), "files": {"a.pdf": base64.b64encode(PDF).decode()}})
    assert status == 413


async def test_who_may_call_what(web):
    tok = setup_documents(web)
    status, body = await _multipart(web, tok.dispatcher, manifest(), {"通知.pdf": PDF})
    doc_id = body["id"]
    reg_id = register_incoming(web)
    for who in (tok.user, tok.registrar):  # neither a dispatcher nor an administrator
        api = _api(web, who)
        assert (await api("POST", "/documents", {"document": manifest("深地税发〔2026〕9号")}))[0] == 403
        assert (await api("GET", "/documents"))[0] == 403
        assert (await api("GET", f"/documents/{doc_id}"))[0] == 403
    for who in (tok.user, tok.dispatcher, tok.admin):  # not registrars
        api = _api(web, who)
        assert (await api("GET", "/incoming"))[0] == 403
        assert (await api("POST", f"/incoming/{reg_id}/sign"))[0] == 403
    # another dispatcher's document is not found, nor listed; an administrator sees every one
    assert (await _api(web, tok.other)("GET", f"/documents/{doc_id}"))[0] == 404
    assert (await _api(web, tok.other)("GET", "/documents"))[1]["documents"] == []
    assert [d["id"] for d in (await _api(web, tok.admin)("GET", "/documents"))[1]["documents"]] == [doc_id]
    assert (await _api(web, tok.admin)("GET", f"/documents/{doc_id}"))[0] == 200
    assert (await _api(web, tok.dispatcher)("GET", "/documents/999"))[0] == 404
    assert (await _api(web, tok.registrar)("POST", "/incoming/999/sign"))[0] == 404
    async with aiohttp.ClientSession() as s, s.get(web.url + "/api/v1/documents") as r:
        assert r.status == 401


async def test_a_registrar_lists_and_signs_for_and_the_receipt_goes_back(web):
    tok = setup_documents(web)
    reg_id = register_incoming(web)
    api = _api(web, tok.registrar)
    status, body, _ = await api("GET", "/incoming?unsigned=1")
    assert status == 200 and [d["id"] for d in body["documents"]] == [reg_id]
    assert body["documents"][0]["signed"] is None and body["documents"][0]["urgency"] == "加急"
    status, signed, _ = await api("POST", f"/incoming/{reg_id}/sign")
    assert status == 200 and signed["new"] is True and signed["signed_by"] == "王登记" and signed["signed"]
    status, again, _ = await api("POST", f"/incoming/{reg_id}/sign")
    assert status == 200 and again["new"] is False and again["signed"] == signed["signed"]
    assert (await api("GET", "/incoming?unsigned=1"))[1]["documents"] == []
    # the sign-for receipt waits in the queue for futian (its route is down): one, of kind "signed"
    receipts = _queued_receipts(web)
    assert [(r.kind, r.registration_number) for r in receipts] == [("signed", signed["registration_number"])]


def _queued_receipts(web) -> list[Receipt]:
    async def go() -> list[bytes]:
        async with web.mb.router.central.read() as conn:
            return [bytes(r[0]) for r in (await conn.execute(select(t.queue_messages.c.data))).all()]
    out = []
    for data in web.run(go()):
        for part in email.message_from_bytes(data, policy=policy.default).walk():
            if part.get_content_type() == RECEIPT_MEDIA_TYPE:
                out.append(Receipt.from_json(part.get_payload(decode=True)))
    return out


async def test_signing_for_is_posted_to_the_workflow_system(web):
    """[documents] webhook_source: the running server's sender posts document.signed to a real receiver."""
    tok = setup_documents(web)
    receiver = await Receiver(new_secret()).start()
    try:
        web.run(WebhookEndpoints(web.mb.router.central).set("registry", receiver.url, secret=receiver.secret))
        reg_id = register_incoming(web)  # registered outside the server's Documents: no callback for it
        status, signed, _ = await _api(web, tok.registrar)("POST", f"/incoming/{reg_id}/sign")
        assert status == 200
        await wait_for(lambda: receiver.requests, timeout=30, what="the document.signed callback")
        [seen] = receiver.requests
        body = json.loads(seen.body)
        assert seen.verified and body["type"] == "document.signed"
        assert body["data"]["registration_number"] == signed["registration_number"]
        assert body["data"]["signed_by"] == "王登记" and body["data"]["from_org"] == "futian"
    finally:
        await receiver.stop()
