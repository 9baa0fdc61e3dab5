"""The admin console in Debian's headless Chromium: an admin creates an account by keyboard; a department admin is refused another department's account."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from .harness import PASSWORD, WebServer
from .people import make_org
from .test_browser import _shot, assert_labelled, chromium, sign_in  # noqa: F401 - chromium is the fixture

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]

MAX_TABS = 30  # Tab presses allowed to reach a control


async def _tab_to(page, element_id: str) -> None:
    """Press Tab until the element has focus (the page is usable by keyboard alone)."""
    for _ in range(MAX_TABS):
        if await page.evaluate("() => document.activeElement && document.activeElement.id") == element_id:
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} not reached with {MAX_TABS} Tab presses")


async def test_an_admin_creates_an_account_and_a_department_admin_is_refused_another_department(tmp_path,
                                                                                              chromium):  # noqa: F811
    web = WebServer(tmp_path).start()
    try:
        make_org(web)
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 1100, "height": 900})
        page = await ctx.new_page()
        await sign_in(page, web)  # alice, an admin
        await page.get_by_role("link", name="管理", exact=True).click()
        await page.wait_for_url("**/admin/accounts")
        await assert_labelled(page)
        await page.get_by_label("地址", exact=True).focus()
        await page.keyboard.type("wang.fang@city.test")
        await page.keyboard.press("Tab")
        await expect(page.locator("#na-name")).to_be_focused()
        await page.keyboard.type("王芳")
        await page.keyboard.press("Tab")
        await expect(page.locator("#na-department")).to_be_focused()
        await page.get_by_label("部门", exact=True).select_option("hr")
        await _tab_to(page, "na-create")
        await page.keyboard.press("Enter")
        await expect(page.locator("#admin-created")).to_be_visible()
        password = (await page.locator("#admin-password").inner_text()).strip()
        await page.screenshot(path=str(_shot("admin-accounts-zh.png")), full_page=True)
        acct = web.run(web.mb.directory.authenticate("wang.fang@city.test", password))
        assert acct is not None and acct.display_name == "王芳" and acct.department_code == "hr"
        # The account page: disable it by keyboard.
        await page.goto(web.url + "/admin/accounts/wang.fang@city.test")
        await assert_labelled(page)
        await page.locator("#ac-name").focus()
        await _tab_to(page, "ac-toggle")
        await page.keyboard.press("Enter")
        await page.wait_for_url("**saved=1")
        await expect(page.locator("#account-state")).to_have_text("已停用")
        assert not web.run(web.mb.directory.account("wang.fang@city.test")).enabled
        for path in ("/admin/departments", "/admin/groups", "/admin/groups/hr-all@city.test", "/admin/aliases"):
            await page.goto(web.url + path)
            await assert_labelled(page)
        await page.screenshot(path=str(_shot("admin-group-zh.png")), full_page=True)
        await ctx.close()

        # fa administers fin (and audit below it): hr's accounts are not found, and it has no way to make an admin.
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})  # a phone
        page = await ctx.new_page()
        await page.goto(web.url + "/login")
        await page.get_by_label("邮箱地址").fill("fa@city.test")
        await page.get_by_label("密码").fill(PASSWORD)
        await page.get_by_role("button", name="登录").click()
        await page.wait_for_url("**/mail")
        await page.get_by_role("link", name="管理", exact=True).click()
        await page.wait_for_url("**/admin/accounts")
        await assert_labelled(page)
        await expect(page.locator('#admin-accounts tr[data-address="f1@city.test"]')).to_have_count(1)
        await expect(page.locator('#admin-accounts tr[data-address="h1@city.test"]')).to_have_count(0)
        await expect(page.locator('#na-role option[value="admin"]')).to_have_count(0)
        await expect(page.locator('#na-department option[value="hr"]')).to_have_count(0)
        await page.screenshot(path=str(_shot("admin-department-admin-zh-phone.png")), full_page=True)
        response = await page.goto(web.url + "/admin/accounts/h1@city.test")
        assert response.status == 404
        response = await page.goto(web.url + "/admin/accounts/wang.fang@city.test")
        assert response.status == 404
        await ctx.close()
        assert not web.run(web.mb.directory.account("wang.fang@city.test")).enabled
        assert web.run(web.mb.directory.account("h1@city.test")).enabled
    finally:
        web.stop()
