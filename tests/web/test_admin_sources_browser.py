"""The workflow sources page in Debian's headless Chromium on a phone screen: a source added by keyboard, its token
shown once and used by the workflow system, then the source revoked after ticking the confirmation."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from .harness import WebServer
from .queueing import set_role
from .test_admin_queue_browser import NO_HORIZONTAL_SCROLL
from .test_browser import _shot, assert_labelled, chromium, sign_in  # noqa: F401 - chromium is the fixture
from .test_events import event, post

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]


async def test_an_admin_adds_a_source_uses_its_token_once_and_revokes_it_in_chromium(tmp_path, chromium):  # noqa: F811
    web = WebServer(tmp_path).start()
    try:
        set_role(web, "alice@city.test", "admin")
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})  # a phone
        page = await ctx.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        await sign_in(page, web)
        await page.goto(web.url + "/admin/accounts")
        await page.locator("#admin-nav").get_by_role("link", name="工作流来源").click()
        await page.wait_for_url("**/admin/sources")
        await assert_labelled(page)
        await expect(page.locator("#src-none")).to_be_visible()

        # The name by keyboard, Enter submits; the token is on the answer, readable on a phone.
        name = page.get_by_label("新来源的名称")
        await name.fill("oa")
        await name.press("Enter")
        secret = page.locator("#src-secret")
        await expect(secret).to_be_visible()
        token = await secret.inner_text()
        assert token.startswith("pr_")
        await expect(page.locator("#src-created")).to_contain_text("只显示这一次")
        assert await page.evaluate(NO_HORIZONTAL_SCROLL)
        await page.screenshot(path=str(_shot("admin-sources-zh-phone.png")), full_page=True)
        assert (await post(web, token, event(1)))[0] == 202

        await page.reload()  # a GET: the page the POST answered is gone, and the secret with it
        await expect(page.locator("#src-secret")).to_have_count(0)
        assert token not in await page.content()

        # Revoking: the button does nothing until the confirmation is ticked (the browser asks for it).
        revoke = page.get_by_role("button", name="吊销来源: oa")
        await revoke.click()
        await expect(page.locator("#src-oa")).to_have_class("active")
        await page.get_by_label("确认吊销 oa").check()
        await revoke.focus()
        await page.keyboard.press("Enter")
        await page.wait_for_url("**done=revoked&name=oa")
        await expect(page.locator("#src-notice")).to_be_visible()
        await expect(page.locator("#src-oa .src-state")).to_contain_text("已于")
        assert (await post(web, token, event(2)))[0] == 401
        assert [e["action"] for e in reversed(web.run(web.mb.directory.audit_entries(2)))] == [
            "source.add", "source.revoke"]
        assert refused == []
        await ctx.close()
    finally:
        web.stop()
