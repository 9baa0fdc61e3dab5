"""The official-documents pages over real HTTP (issue 12): 收文 list, reading page, file download and 签收 for registrars; 发文 tracking for senders; who may see what; CSRF."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from bridges.docmail import document_message
from bridges.manifest import Document, describe_file
from mailboxes.documents import Documents
from mailboxes.webhookendpoints import WebhookEndpoints, new_secret
from tests.protocol.smtp.support import wait_for
from tests.support.webhook_receiver import Receiver
from webmail.views.documents import PAGE_SIZE

from .documents import DISPATCHER, OTHER, PDF, REGISTRAR, setup_documents
from .harness import Browser, counted_reads, csrf_of
from .test_documents_api import _queued_receipts, web  # noqa: F401 - the documents server fixture

FILE_NAME = "关于报送材料的函（附件一）.pdf"


@pytest.fixture
async def browsers(web):
    made: list[Browser] = []

    async def signed_in(address: str) -> Browser:
        b = Browser(web.url)
        made.append(b)
        r, _ = await b.sign_in(address)
        assert r.status == 200, address
        return b
    yield signed_in
    for b in made:
        await b.close()


def document_raw(number: str, *, urgency: str = "加急", title: str = "关于报送材料的函",
                 forged: bytes | None = None) -> tuple[Document, bytes, str]:
    """(manifest, message, Message-ID) of a document from futian; ``forged``: the file's first bytes replaced after signing."""
    doc = Document.from_json({"issuing_organ": ["福田区税务局"], "document_number": number, "title": title,
                              "main_recipients": ["city"], "copy_recipients": ["luohu"], "date": "2026-12-02",
                              "urgency": urgency, "signers": ["赵六"], "printed_by": "福田区税务局办公室",
                              "printed_on": "2026-12-02",
                              "attachments": [describe_file(FILE_NAME, PDF).__dict__]})
    mid = f"<{abs(hash(number))}@futian.test>"
    raw = document_message(doc, {FILE_NAME: PDF}, sender="documents@futian.test", to="documents@city.test",
                           now=datetime(2026, 12, 2, tzinfo=timezone.utc), hostname="mail.futian.test",
                           message_id=mid)
    if forged is not None:
        prefix = base64.encodebytes(PDF)[:40]
        assert raw.count(prefix) == 1
        raw = raw.replace(prefix, base64.encodebytes(forged + PDF[len(forged):])[:40])
    return doc, raw, mid


def incoming_document(web, number: str = "深发〔2026〕3号", *, urgency: str = "加急", title: str = "关于报送材料的函",
                      at: datetime | None = None) -> int:
    """A document from futian as the intake leaves it: its message filed in 收文 and its registration; the id."""
    doc, raw, mid = document_raw(number, urgency=urgency, title=title)
    web.accounts.setdefault("documents", web.run(web.mb.directory.account("documents@city.test")))
    web.deliver("documents", raw, folder="收文")

    async def go() -> int:
        docs = Documents(web.mb.router.central, clock=lambda: at or datetime.now(timezone.utc))
        reg, _ = await docs.register(partner_org="futian", issuing_organ="福田区税务局", number=number, title=title,
                                     urgency=urgency, manifest=doc.to_json().decode(), message_id=mid)
        return reg.id
    return web.run(go())


def dispatched(web, number: str, *, sender: str = DISPATCHER, urgency: str = "特急", ago: timedelta = timedelta(0),
               orgs=("futian", "luohu")) -> int:
    """A document recorded as dispatched `ago` (its recipients queued then); its id."""
    async def go() -> int:
        docs = Documents(web.mb.router.central, clock=lambda: datetime.now(timezone.utc) - ago)
        return await docs.record_dispatch(
            issuing_organ="深圳市地方税务局", year=2026, number=number, title=f"通知{number}", urgency=urgency,
            manifest="{}", sender=sender, recipients={o: (f"<{o}{number}@city.test>", f"q-{o}-{number}")
                                                      for o in orgs})
    return web.run(go())


async def test_a_download_is_the_file_the_manifest_names_never_a_forged_copy(web, browsers):
    """Files are read through the stored part tree; one whose SHA-256 differs from the manifest's is never served."""
    setup_documents(web)
    reg_id = incoming_document(web, "深发〔2026〕7号")
    web.deliver("documents", document_raw("深发〔2026〕7号", forged=b"%PDF-1.7 forged")[1], folder="收文")  # newer
    reg = await browsers(REGISTRAR)
    r, data = await reg.download(f"/documents/incoming/{reg_id}/files/0")
    assert r.status == 200 and data == PDF  # the newer, forged copy was skipped for the genuine one
    for bad in ("1", "-1", "99999999999"):
        assert (await reg.download(f"/documents/incoming/{reg_id}/files/{bad}"))[0].status == 404, bad

    async def expunge_all() -> None:  # retention removed the genuine copy; a forged one arrives after
        acct = await web.mb.directory.account("documents@city.test")
        folder = await web.mb.store.folder(acct, "收文")
        await web.mb.store.expunge(folder.ref, [m.uid for m in await web.mb.store.messages(folder.ref)],
                                   deleted_only=False)
    web.run(expunge_all())
    web.deliver("documents", document_raw("深发〔2026〕7号", forged=b"%PDF-1.7 forged")[1], folder="收文")
    r, page = await reg.download(f"/documents/incoming/{reg_id}/files/0")
    assert r.status == 404 and PDF not in page


async def test_a_download_reads_the_manifest_and_that_file_from_the_store_not_the_whole_message(web, browsers):
    setup_documents(web)
    big = b"%PDF-1.7\n" + bytes(range(256)) * 8192  # 2 MiB: the second file of the document
    number = "深发〔2026〕9号"
    doc = Document.from_json({"issuing_organ": ["福田区税务局"], "document_number": number, "title": "两个附件",
                              "main_recipients": ["city"], "date": "2026-12-02", "urgency": "", "signers": ["赵六"],
                              "printed_by": "福田区税务局办公室", "printed_on": "2026-12-02",
                              "attachments": [describe_file(FILE_NAME, PDF).__dict__,
                                              describe_file("附件二.pdf", big).__dict__]})
    mid = "<two-files@futian.test>"
    raw = document_message(doc, {FILE_NAME: PDF, "附件二.pdf": big}, sender="documents@futian.test",
                           to="documents@city.test", now=datetime(2026, 12, 2, tzinfo=timezone.utc),
                           hostname="mail.futian.test", message_id=mid)
    web.accounts.setdefault("documents", web.run(web.mb.directory.account("documents@city.test")))
    web.deliver("documents", raw, folder="收文")

    async def register() -> int:
        reg, _ = await Documents(web.mb.router.central).register(
            partner_org="futian", issuing_organ="福田区税务局", number=number, title="两个附件", urgency="",
            manifest=doc.to_json().decode(), message_id=mid)
        return reg.id
    reg_id = web.run(register())
    with counted_reads(web.mb.store) as read:
        reg = await browsers(REGISTRAR)
        r, data = await reg.download(f"/documents/incoming/{reg_id}/files/0")
        assert r.status == 200 and data == PDF
        assert [kind for kind, _ in read] == ["range", "range"]  # the manifest, then the file: never the whole
        assert sum(n for _, n in read) < len(big) // 10
        read.clear()
        r, data = await reg.download(f"/documents/incoming/{reg_id}/files/1")
        assert r.status == 200 and data == big
        assert [kind for kind, _ in read] == ["range", "range"] and sum(n for _, n in read) < len(raw)


def _rows(page: str, attr: str) -> list[str]:
    return re.findall(rf'<tr {attr}="([^"]+)"', page)


async def test_a_registrar_sees_urgent_first_reads_downloads_and_signs_for_it(web, browsers):
    setup_documents(web)
    old = incoming_document(web, "深发〔2026〕1号", urgency="", title="例行函")
    urgent = incoming_document(web, "深发〔2026〕2号", urgency="特急", title="特急通知")
    newest = incoming_document(web, "深发〔2026〕3号", urgency="")
    reg = await browsers(REGISTRAR)
    r, page = await reg.get("/documents/incoming")
    assert r.status == 200 and "'unsafe-inline'" not in r.headers["Content-Security-Policy"]
    assert _rows(page, "data-registration-id") == [str(urgent), str(newest), str(old)]
    assert 'data-urgency="特急"' in page and "3 件待签收" in page and 'id="nav-documents-incoming"' in page
    assert 'id="nav-documents-sent"' not in page  # a registrar, not a dispatcher

    r, page = await reg.get(f"/documents/incoming/{urgent}")
    assert r.status == 200
    assert "福田区税务局</span>" not in page and "福田区税务局<span" in page  # the partner's name and its code
    for element in ("福田区税务局", "深发〔2026〕2号", "特急通知", "赵六", "luohu", "2026-12-02", "福田区税务局办公室",
                    FILE_NAME):
        assert element in page, element
    href = f"/documents/incoming/{urgent}/files/0"
    assert f'href="{href}"' in page
    r, data = await reg.download(href)
    assert r.status == 200 and data == PDF
    assert r.headers["Content-Disposition"].endswith("filename*=UTF-8''" + quote(FILE_NAME, safe=""))
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert (await reg.download(f"/documents/incoming/{urgent}/files/1"))[0].status == 404

    r, _ = await reg.post(f"/documents/incoming/{urgent}/sign", {"csrf": csrf_of(page)}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == f"/documents/incoming/{urgent}?signed=done"
    _, page = await reg.get(f"/documents/incoming/{urgent}?signed=done")
    assert "已签收" in page and "王登记" in page and 'id="sign-for"' not in page
    # the same code path as the API and the CLI: the sign-for receipt waits in the queue for futian
    assert [(x.kind, x.document_number.seq) for x in _queued_receipts(web)] == [("signed", 2)]
    r, _ = await reg.post(f"/documents/incoming/{urgent}/sign", {"csrf": csrf_of(page)}, allow_redirects=False)
    assert r.headers["Location"].endswith("?signed=already") and len(_queued_receipts(web)) == 1
    _, page = await reg.get("/documents/incoming")
    assert _rows(page, "data-registration-id") == [str(newest), str(urgent), str(old)]  # signed: no longer first


async def test_the_list_is_paged(web, browsers):
    setup_documents(web)

    async def many() -> None:
        docs = Documents(web.mb.router.central)
        for n in range(PAGE_SIZE + 3):
            await docs.register(partner_org="futian", issuing_organ="福田区税务局", number=f"深发〔2026〕{n + 1}号",
                                title=f"函{n}", urgency="", manifest="{}", message_id=f"<{n}@futian.test>")
    web.run(many())
    reg = await browsers(REGISTRAR)
    _, first = await reg.get("/documents/incoming")
    _, second = await reg.get("/documents/incoming?page=2")
    assert len(_rows(first, "data-registration-id")) == PAGE_SIZE and 'href="/documents/incoming?page=2"' in first
    assert len(_rows(second, "data-registration-id")) == 3
    assert set(_rows(first, "data-registration-id")).isdisjoint(_rows(second, "data-registration-id"))
    for bad in ("0", "-1", "x", "9" * 40):
        assert (await reg.get(f"/documents/incoming?page={bad}"))[0].status == 200
    # a registration whose message is not kept: the elements are not readable, the page still works
    r, page = await reg.get(f"/documents/incoming/{_rows(first, 'data-registration-id')[0]}")
    assert r.status == 200 and 'id="doc-no-manifest"' in page and 'id="sign-for"' in page


async def test_who_may_see_which_pages_and_ids_of_others_are_not_found(web, browsers):
    setup_documents(web)
    reg_id = incoming_document(web)
    mine = dispatched(web, "深地税发〔2026〕1号")
    theirs = dispatched(web, "深地税发〔2026〕2号", sender=OTHER)
    incoming_pages = ("/documents/incoming", f"/documents/incoming/{reg_id}", f"/documents/incoming/{reg_id}/files/0")
    sent_pages = ("/documents/sent", f"/documents/sent/{mine}")
    for who in ("bob@city.test", DISPATCHER, "alice@city.test"):  # not registrars (alice is an administrator)
        b = await browsers(who)
        _, home = await b.get("/mail")
        assert 'id="nav-documents-incoming"' not in home
        for path in incoming_pages:
            assert (await b.get(path))[0].status == 403, (who, path)
        r, _ = await b.post(f"/documents/incoming/{reg_id}/sign", {"csrf": csrf_of(home)}, allow_redirects=False)
        assert r.status == 403
    for who in ("bob@city.test", REGISTRAR):  # neither dispatchers nor administrators
        b = await browsers(who)
        _, home = await b.get("/mail")
        assert 'id="nav-documents-sent"' not in home
        for path in sent_pages:
            assert (await b.get(path))[0].status == 403, (who, path)
    reg = await browsers(REGISTRAR)
    for path in ("/documents/incoming/999", "/documents/incoming/999/files/0", f"/documents/incoming/{reg_id}x",
                 "/documents/incoming/１", "/documents/incoming/" + "9" * 30):
        assert (await reg.get(path))[0].status == 404, path
    _, page = await reg.get("/documents/incoming")
    assert (await reg.post("/documents/incoming/999/sign", {"csrf": csrf_of(page)}, allow_redirects=False)
            )[0].status == 404
    disp = await browsers(DISPATCHER)
    _, page = await disp.get("/documents/sent")
    assert 'id="nav-documents-sent"' in page and _rows(page, "data-document-id") == [str(mine)]
    assert (await disp.get(f"/documents/sent/{theirs}"))[0].status == 404  # another dispatcher's document
    assert (await disp.get("/documents/sent/999"))[0].status == 404
    admin = await browsers("alice@city.test")
    _, page = await admin.get("/documents/sent")
    assert _rows(page, "data-document-id") == [str(theirs), str(mine)]  # an administrator sees every one
    assert (await admin.get(f"/documents/sent/{theirs}"))[0].status == 200
    out = Browser(web.url)
    try:
        for path in (*incoming_pages, *sent_pages):
            r, _ = await out.get(path, allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/login"
    finally:
        await out.close()


async def test_signing_for_needs_this_sessions_csrf_token(web, browsers):
    setup_documents(web)
    reg_id = incoming_document(web)
    reg = await browsers(REGISTRAR)
    bob = await browsers("bob@city.test")
    _, bobs = await bob.get("/mail")
    for form in ({}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": csrf_of(bobs)}):
        r, _ = await reg.post(f"/documents/incoming/{reg_id}/sign", form, allow_redirects=False)
        assert r.status == 403, form
    async with reg.session.get(reg.base + f"/documents/incoming/{reg_id}/sign") as r:
        assert r.status == 405  # never by GET
    assert web.run(Documents(web.mb.router.central).registration_by_id(reg_id)).signed_at is None
    assert _queued_receipts(web) == []


async def test_a_sender_sees_each_step_with_its_time_and_overdue_urgent_ones_marked(web, browsers):
    setup_documents(web)
    late = dispatched(web, "深地税发〔2026〕5号", ago=timedelta(hours=3))  # 特急, past remind_urgent_after (2 h)
    fresh = dispatched(web, "深地税发〔2026〕6号", urgency="加急")

    async def steps() -> None:
        docs = Documents(web.mb.router.central)
        await docs.track("深地税发〔2026〕5号", "futian", "delivered", issuing_organ="深圳市地方税务局")
        await docs.track("深地税发〔2026〕5号", "futian", "registered", registration_number="福收〔2026〕1号",
                         issuing_organ="深圳市地方税务局")
        await docs.track("深地税发〔2026〕5号", "futian", "signed", signed_by="李四", issuing_organ="深圳市地方税务局")
    web.run(steps())
    disp = await browsers(DISPATCHER)
    _, page = await disp.get("/documents/sent")
    assert _rows(page, "data-document-id") == [str(fresh), str(late)]
    assert "1/2 已签收" in page and "超时未签收（luohu）" in page
    r, page = await disp.get(f"/documents/sent/{late}")
    assert r.status == 200
    rows = dict(re.findall(r'<tr data-org="([^"]+)" data-state="([^"]+)"', page))
    assert rows == {"futian": "signed", "luohu": "queued"}
    futian = page.split('data-org="futian"')[1].split("</tr>")[0]
    luohu = page.split('data-org="luohu"')[1].split("</tr>")[0]
    for step in ("queued", "delivered", "registered", "signed"):
        assert re.search(rf'class="doc-step-{step}"><time datetime="', futian), step
    assert "福收〔2026〕1号" in futian and "李四" in futian and "超时未签收" not in futian
    assert 'class="doc-late"' in page and "超时未签收" in luohu and luohu.count("<time") == 1  # only queued
    _, page = await disp.get(f"/documents/sent/{fresh}")
    assert "超时未签收" not in page  # 加急, queued just now



async def test_signing_for_on_the_page_is_posted_to_the_workflow_system(web, browsers):
    """The page signs through the server's own Documents (with [documents] webhook_source): document.signed is posted."""
    setup_documents(web)
    receiver = await Receiver(new_secret()).start()
    try:
        web.run(WebhookEndpoints(web.mb.router.central).set("registry", receiver.url, secret=receiver.secret))
        reg_id = incoming_document(web)
        reg = await browsers(REGISTRAR)
        _, page = await reg.get(f"/documents/incoming/{reg_id}")
        r, _ = await reg.post(f"/documents/incoming/{reg_id}/sign", {"csrf": csrf_of(page)}, allow_redirects=False)
        assert r.status == 303
        await wait_for(lambda: receiver.requests, timeout=30, what="the document.signed callback")
        [seen] = receiver.requests
        body = json.loads(seen.body)
        assert seen.verified and body["type"] == "document.signed" and body["data"]["signed_by"] == "王登记"
    finally:
        await receiver.stop()


async def test_the_pages_in_english(web, browsers):
    setup_documents(web)
    reg_id = incoming_document(web, urgency="特急")
    doc_id = dispatched(web, "深地税发〔2026〕1号", ago=timedelta(hours=3))
    en = {"Accept-Language": "en"}
    reg = await browsers(REGISTRAR)
    _, page = await reg.get("/documents/incoming", headers=en)
    assert "Incoming documents" in page and "特急 extra urgent" in page and "1 waiting to be signed for" in page
    _, page = await reg.get(f"/documents/incoming/{reg_id}", headers=en)
    assert "Document elements" in page and "Sign for it" in page
    admin = await browsers("alice@city.test")
    _, page = await admin.get(f"/documents/sent/{doc_id}", headers=en)
    assert "Dispatched documents" in page and "Overdue" in page and "Signed for" in page
