"""The audit log and legal holds pages in Debian's headless Chromium: an admin searches the log, verifies it and places a hold by keyboard."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from .harness import WebServer
from .queueing import set_role
from .test_browser import _shot, assert_labelled, chromium, sign_in  # noqa: F401 - chromium is the fixture

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]

NO_HORIZONTAL_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth + 1"


async def test_an_admin_searches_the_audit_log_and_places_a_hold_in_chromium(tmp_path, chromium):  # noqa: F811
    web = WebServer(tmp_path).start()
    try:
        web.run(web.mb.directory.audit("li@city.test", "account.disable", "zhao@city.test", why="离职"))
        web.run(web.mb.directory.audit("li@city.test", "group.add", "office@city.test"))
        set_role(web, "alice@city.test", "admin")
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        await sign_in(page, web)

        await page.goto(web.url + "/admin/accounts")
        await page.get_by_role("link", name="审计日志").click()  # from the console's navigation
        await page.wait_for_url("**/admin/audit")
        await assert_labelled(page)
        await page.get_by_label("全文（包含）").fill("离职")
        await page.keyboard.press("Enter")
        await page.wait_for_url("**text=**")
        rows = page.locator("#aud-list tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("account.disable")
        await expect(rows.first).to_contain_text("zhao@city.test")
        await expect(page.locator("#aud-export")).to_have_attribute("href", "/admin/audit/export?text=%E7%A6%BB%E8%81%8C")
        await page.locator("#aud-verify").click()
        await page.wait_for_url("**verified=1**")
        await expect(page.locator("#aud-verify-result")).to_contain_text("审计日志完整")
        await page.screenshot(path=str(_shot("admin-audit-zh.png")), full_page=True)

        await page.get_by_role("link", name="法律保全与保留期限").click()
        await page.wait_for_url("**/admin/holds")
        await assert_labelled(page)
        await page.get_by_label("名称（案件）").fill("案件 2026-17")
        await page.keyboard.press("Tab")
        await expect(page.get_by_label("理由", exact=True)).to_be_focused()
        await page.keyboard.type("纪检调查")
        await page.get_by_label("账号", exact=True).fill("bob@city.test")
        await page.locator("#hp-submit").focus()
        await page.keyboard.press("Enter")
        await page.wait_for_url("**done=placed**")
        await expect(page.locator("#hold-notice")).to_be_visible()
        row = page.locator("#hold-list tr.active")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("案件 2026-17")
        await expect(row).to_contain_text("bob@city.test")
        [hold] = web.run(web.mb.store.holds.list())
        assert (hold.name, hold.kind, hold.account_id) == ("案件 2026-17", "account", web.accounts["bob"].id)
        await page.screenshot(path=str(_shot("admin-holds-zh.png")), full_page=True)

        await page.set_viewport_size({"width": 390, "height": 844})  # a phone
        await page.reload()
        assert await page.evaluate(NO_HORIZONTAL_SCROLL)
        await page.screenshot(path=str(_shot("admin-holds-zh-phone.png")), full_page=True)
        await page.goto(web.url + "/admin/audit")
        assert await page.evaluate(NO_HORIZONTAL_SCROLL)
        await page.screenshot(path=str(_shot("admin-audit-zh-phone.png")), full_page=True)
        actions = [e["action"] for e in reversed(web.run(web.mb.directory.audit_entries(10)))]
        assert "hold.place" in actions and "audit.verify" in actions
        assert refused == []
        await ctx.close()
    finally:
        web.stop()
