"""The mail settings page in Debian's headless Chromium: reached from the navigation, filled by label and keyboard, on a phone screen."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from mailboxes.mailsettings import OOO_ZONE

from .harness import WebServer
from .test_browser import _shot, assert_labelled, chromium, sign_in  # noqa: F401 - chromium is the fixture

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]


async def test_out_of_office_and_a_rule_set_in_chromium(tmp_path, chromium):  # noqa: F811
    web = WebServer(tmp_path).start()
    try:
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})  # a phone
        page = await ctx.new_page()
        await sign_in(page, web)
        await page.get_by_role("link", name="邮件设置").click()
        await page.wait_for_url("**/settings/mail")
        await assert_labelled(page)
        today = datetime.now(OOO_ZONE).date()
        await page.get_by_label("开启自动回复").focus()
        await page.keyboard.press("Space")  # the checkbox by keyboard
        await page.get_by_label("开始日期（可不填）").fill(str(today))
        await page.get_by_label("结束日期（含当天，可不填）").fill(str(today + timedelta(days=3)))
        await page.get_by_label("回复内容").fill("我在休假。")
        await page.get_by_label("主题", exact=True).fill("休假")
        await page.keyboard.press("Enter")  # submits the out-of-office form
        await page.wait_for_url("**saved=ooo")
        assert await page.locator("#settings-saved").count() == 1
        assert await page.get_by_label("开启自动回复").is_checked()
        await page.get_by_label("如果", exact=True).select_option("subject")
        await page.get_by_label("包含（邮件列表：等于）").fill("发票")
        await page.get_by_label("则", exact=True).select_option("flag")
        await page.click("#rule-add")
        await page.wait_for_url("**saved=rules")
        assert await page.locator("#rules li").count() == 1
        await page.screenshot(path=str(_shot("mail-settings-zh-phone.png")), full_page=True)
        await ctx.close()
        alice = web.accounts["alice"].id
        ooo = web.run(web.mb.settings.out_of_office(alice))
        assert ooo.enabled and ooo.subject == "休假" and ooo.body == "我在休假。"
        assert ooo.start.astimezone(OOO_ZONE).date() == today
        [rule] = web.run(web.mb.settings.rules(alice))
        assert (rule.field, rule.value, rule.action, rule.argument) == ("subject", "发票", "flag", "\\Flagged")
    finally:
        web.stop()
