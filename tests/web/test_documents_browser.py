"""Official documents in Chromium between two real sites (issue 12): a registrar at the district signs for an urgent document and the city's tracker shows it; a sender follows its own document's tracking table.

The district (org futian, domain city.test) is the whole server with the webmail; the city
(org city, domain shi.test) is a second Postroom instance with its own database and intake, as
in tests/multisite/test_documents_flow.py. They trust each other's DKIM keys and route to each
other's SMTP listener on loopback.
"""

from __future__ import annotations

import pytest

from bridges.dispatch import Dispatcher
from bridges.docservice import dispatcher as site_dispatcher
from bridges.manifest import Document, describe_file
from mailboxes.admindir import DirectoryAdmin
from mailboxes.documents import Documents
from mailserver.config import Config
from tests.multisite.test_documents_flow import make_site
from tests.protocol.smtp.support import wait_for

from .harness import PASSWORD, WebServer
from .test_accessibility_browser import NO_HORIZONTAL_SCROLL, check_page
from .test_browser import _shot, assert_labelled, chromium  # noqa: F401 - the module's browser fixture

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 64
FILE_NAME = "关于做好汇算清缴工作的通知（正文）.pdf"
REGISTRAR, SENDER = "reg@city.test", "fawen@city.test"
CITY_SENDER = "fawen@shi.test"


def district(tmp) -> WebServer:
    srv = WebServer(tmp, early_accounts=("documents", "reg", "fawen"))
    values = {section: dict(keys) for section, keys in srv.config.values.items()}
    values["documents"].update(org="futian", address="documents@city.test", registrars=[REGISTRAR],
                               dispatchers=[SENDER])
    srv.config = Config(srv.config.path, values)
    return srv.start()


def manifest(number: str, recipients: list[str], urgency: str, files: dict[str, bytes], organ="深圳市地方税务局",
             title="关于做好汇算清缴工作的通知") -> Document:
    return Document.from_json({
        "issuing_organ": [organ], "document_number": number, "title": title, "main_recipients": recipients,
        "date": "2026-12-03", "urgency": urgency, "signers": ["张三"], "printed_by": f"{organ}办公室",
        "printed_on": "2026-12-03", "attachments": [describe_file(n, d).__dict__ for n, d in files.items()]})


async def join(web: WebServer, city) -> None:
    """Keys, routes and partners both ways; the city's sender account; the city's intake started."""
    parts = web.ctx.extras["delivery"]
    city_txt = (await city.inst.parts.keys.generate("shi.test", "s2026", 1024))[1]
    city_smtp = f"127.0.0.1:{city.inst.port('smtp')}"

    async def district_side() -> str:
        txt = (await parts.keys.generate("city.test", "s2026", 1024))[1]
        await parts.keys.trust("shi.test", "s2026", city_txt)
        await parts.routes.add("shi.test", city_smtp, tls="opportunistic")
        await Documents(web.mb.router.central).add_partner("city", "shi.test", name="深圳市局")
        admin = DirectoryAdmin(web.mb.directory)
        await admin.update_account(REGISTRAR, display_name="王登记")
        await admin.update_account("bob@city.test", display_name="Bob")
        return txt
    txt = await web.loop_run(district_side())
    await city.inst.parts.keys.trust("city.test", "s2026", txt)
    await city.inst.parts.routes.add("city.test", f"127.0.0.1:{web.smtp_port}", tls="opportunistic")
    await city.docs.add_partner("futian", "city.test", name="福田区税务局")
    await city.inst.add_user(CITY_SENDER)
    await city.intake.start()


async def sign_in(page, web: WebServer, address: str) -> None:
    await page.goto(web.url + "/login")
    await page.get_by_label("邮箱地址").fill(address)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url("**/mail")


async def test_a_registrar_signs_for_an_urgent_document_and_the_city_sees_it(tmp_path, chromium):  # noqa: F811
    web = district(tmp_path / "futian")
    city = await make_site(tmp_path, "city", "shi.test")
    try:
        await join(web, city)
        send = Dispatcher(city.docs, city.inst.parts.submitter.submit, hostname="mail.shi.test").send
        fawen = await city.inst.mb.directory.account(CITY_SENDER)
        routine = {"例行通知.pdf": PDF}
        await send(manifest("深地税发〔2026〕6号", ["futian"], "", routine, title="关于例行工作的通知"), routine,
                   sender=CITY_SENDER, account=fawen)
        urgent = {FILE_NAME: PDF}
        await send(manifest("深地税发〔2026〕7号", ["futian"], "特急", urgent), urgent, sender=CITY_SENDER,
                   account=fawen)

        async def registered(n: int) -> bool:
            return len(await web.loop_run(Documents(web.mb.router.central).registrations())) == n
        await wait_for(lambda: registered(2), timeout=60, what="both documents registered at futian")

        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844},  # a phone
                                         accept_downloads=True)
        page = await ctx.new_page()
        await sign_in(page, web, REGISTRAR)
        await page.locator("#nav-documents-incoming").click()
        await page.wait_for_url("**/documents/incoming")
        first = page.locator("#incoming-table tbody tr").first
        assert await first.locator("[data-urgency='特急']").count() == 1  # urgent first, visibly marked
        assert "关于做好汇算清缴工作的通知" in await first.inner_text()
        assert "待签收" in await first.inner_text()
        await page.screenshot(path=str(_shot("documents-incoming-zh.png")), full_page=True)
        # the accessibility walk's checks (tests/web/test_accessibility_browser.py) on the documents pages
        problems = await check_page(page, page.url, "#incoming-table")
        problems += [] if await page.evaluate(NO_HORIZONTAL_SCROLL) else [f"{page.url}: wider than a phone"]

        await first.get_by_role("link").click()
        await page.wait_for_url("**/documents/incoming/*")
        facts = await page.locator("#doc-elements").inner_text()
        for element in ("深圳市地方税务局", "深地税发〔2026〕7号", "张三", "futian", "2026-12-03", "特急"):
            assert element in facts, element
        await assert_labelled(page)
        problems += await check_page(page, page.url, "#doc-elements")
        problems += [] if await page.evaluate(NO_HORIZONTAL_SCROLL) else [f"{page.url}: wider than a phone"]
        assert problems == []
        async with page.expect_download() as info:
            await page.get_by_role("link", name=FILE_NAME).click()
        download = await info.value
        assert download.suggested_filename == FILE_NAME
        assert (await download.path()).read_bytes() == PDF
        await page.screenshot(path=str(_shot("documents-read-zh.png")), full_page=True)

        await page.locator("#sign-for").focus()
        await page.keyboard.press("Enter")  # by keyboard
        await page.wait_for_url("**signed=done**")
        assert "王登记" in await page.locator("#doc-signed-state").inner_text()
        assert "深圳市局" in await page.locator("#doc-from").inner_text()  # the partner's name, not only its code
        assert await page.locator("#sign-for").count() == 0

        async def city_sees_signed() -> bool:
            [row] = await city.docs.tracking(number="深地税发〔2026〕7号")
            return row.state == "signed" and row.signed_by == "王登记" and row.registration_number != ""
        await wait_for(city_sees_signed, timeout=60, what="the sign-for receipt in the city's tracker")
        [routine_row] = await city.docs.tracking(number="深地税发〔2026〕6号")
        assert routine_row.state == "registered"  # not signed for: only the urgent one was

        # bob is no registrar: no link, and the pages refuse him
        other = await chromium.new_context(locale="zh-CN")
        bob = await other.new_page()
        await sign_in(bob, web, "bob@city.test")
        assert await bob.locator("#nav-documents-incoming").count() == 0
        assert await bob.locator("#nav-documents-sent").count() == 0
        for path in ("/documents/incoming", "/documents/incoming/1", "/documents/sent"):
            r = await bob.goto(web.url + path)
            assert r is not None and r.status in (403, 404), path
        await other.close()
        await ctx.close()
    finally:
        await city.intake.close()
        await city.inst.stop()
        web.stop()


async def test_a_sender_follows_its_document_to_the_city_in_the_tracking_table(tmp_path, chromium):  # noqa: F811
    web = district(tmp_path / "futian")
    city = await make_site(tmp_path, "city", "shi.test")
    try:
        await join(web, city)
        files = {"报送材料.pdf": PDF}
        doc = manifest("福地税发〔2026〕3号", ["city"], "加急", files, organ="福田区税务局", title="关于报送材料的函")

        async def dispatch() -> int:
            sender = await web.mb.directory.account(SENDER)
            out = await site_dispatcher(web.mb, web.config, web.ctx.extras["delivery"]).send(
                doc, files, sender=SENDER, account=sender)
            return out.document_id
        doc_id = await web.loop_run(dispatch())

        async def city_registered() -> bool:
            return len(await city.docs.registrations()) == 1
        await wait_for(city_registered, timeout=60, what="the city registers futian's document")
        [reg] = await city.docs.registrations()
        await city.intake.sign(reg.registration_number, "市局李四")

        async def tracked_signed() -> bool:
            [row] = await web.loop_run(Documents(web.mb.router.central).tracking(document_id=doc_id))
            return row.state == "signed"
        await wait_for(tracked_signed, timeout=60, what="the city's sign-for in futian's tracker")

        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
        page = await ctx.new_page()
        await sign_in(page, web, SENDER)
        assert await page.locator("#nav-documents-incoming").count() == 0  # a sender, not a registrar
        await page.locator("#nav-documents-sent").click()
        await page.wait_for_url("**/documents/sent")
        row = page.locator(f"#sent-table tr[data-document-id='{doc_id}']")
        assert "1/1 已签收" in await row.inner_text()
        await row.get_by_role("link").click()
        await page.wait_for_url(f"**/documents/sent/{doc_id}")
        city_row = page.locator("#tracking-table tr[data-org='city']")
        assert await city_row.get_attribute("data-state") == "signed"
        for step in ("queued", "sent", "delivered", "registered", "signed"):
            assert await city_row.locator(f".doc-step-{step} time").count() == 1, step
        assert "市局李四" in await city_row.inner_text() and reg.registration_number in await city_row.inner_text()
        assert await page.locator(".doc-overdue").count() == 0
        await assert_labelled(page)
        await page.screenshot(path=str(_shot("documents-tracking-zh.png")), full_page=True)
        # the accessibility walk's checks on both tracking pages, at a phone's width (this context's)
        problems = []
        for url in (web.url + "/documents/sent", page.url):
            problems += await check_page(page, url, "#sent-table, #tracking-table")
            if not await page.evaluate(NO_HORIZONTAL_SCROLL):
                problems.append(f"{url}: wider than a phone's screen")
        assert problems == []
        await ctx.close()
    finally:
        await city.intake.close()
        await city.inst.stop()
        web.stop()
