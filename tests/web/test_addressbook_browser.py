"""Recipient completion from the address book in Chromium: a colleague chosen by keyboard from part of a Chinese name gets the mail with its attachment, reads it over IMAP, and the sender sees it read."""

from __future__ import annotations

import email
import email.policy

import pytest

from .harness import WebServer
from .test_addressbook import org
from .test_browser import _shot, assert_labelled, chromium, sign_in  # noqa: F401 - the module's browser fixture
from .test_compose import _imap

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]


async def test_compose_to_a_colleague_picked_by_keyboard_from_part_of_a_chinese_name(tmp_path, chromium):  # noqa: F811
    web = WebServer(tmp_path).start()
    try:
        await org(web)  # 王芳 and 王伟 in 办公室; 王离职 disabled
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})  # a phone
        page = await ctx.new_page()
        await sign_in(page, web)
        await page.click("#nav-addressbook")
        await page.wait_for_url("**/addressbook")
        await assert_labelled(page)
        await page.screenshot(path=str(_shot("addressbook-zh.png")), full_page=True)

        await page.goto(web.url + "/compose")
        to = page.get_by_role("combobox", name="收件人")
        await to.fill("bob@city.test, ")
        await to.press_sequentially("王")
        listbox = page.locator("#" + await to.get_attribute("aria-controls"))
        assert await listbox.get_attribute("role") == "listbox"
        assert await listbox.get_attribute("aria-label") == "地址建议"  # a name of its own:
        assert await page.get_by_label("收件人").count() == 1  # the To label still names one control
        options = listbox.get_by_role("option")
        await options.first.wait_for()
        assert await to.get_attribute("aria-expanded") == "true"
        addresses = [await o.get_attribute("data-address") for o in await options.all()]
        assert sorted(addresses) == ["wangfang@city.test", "wangwei@city.test"]  # not the disabled 王离职
        await to.press("Escape")  # closes, keeps the text
        assert await to.get_attribute("aria-expanded") == "false" and await to.input_value() == "bob@city.test, 王"
        await to.press_sequentially("芳")
        await listbox.get_by_role("option", name="王芳").wait_for()
        await to.press("ArrowDown")
        chosen = await to.get_attribute("aria-activedescendant")
        assert await page.locator(f"#{chosen}").get_attribute("aria-selected") == "true"
        assert await page.locator(f"#{chosen}").get_attribute("data-address") == "wangfang@city.test"
        await page.screenshot(path=str(_shot("compose-complete-zh.png")))
        await to.press("Enter")  # picks; does not send the form
        assert await to.input_value() == "bob@city.test, wangfang@city.test"
        assert await listbox.get_by_role("option").count() == 0
        await page.get_by_label("主题").fill("通讯录测试")
        await page.locator("#editor").wait_for()  # compose.js has put the editor in the textarea's place
        await page.get_by_label("正文").fill("你好")
        upload = tmp_path / "会议纪要.txt"
        upload.write_text("第一项：预算\n", encoding="utf-8")
        await page.get_by_label("添加附件").set_input_files(str(upload))
        await page.click("#send")
        await page.wait_for_url("**folder=Sent**")

        # The colleague reads it over IMAP (a FETCH of the body: \Seen), attachment and its Chinese name included.
        imap = _imap(web, "wangfang")
        try:
            imap.select("INBOX")
            typ, data = imap.fetch("1", "(BODY[])")
            assert typ == "OK"
            msg = email.message_from_bytes(data[0][1], policy=email.policy.default)
            assert msg["Subject"] == "通讯录测试"
            assert {a.addr_spec for a in msg["To"].addresses} == {"bob@city.test", "wangfang@city.test"}
            [att] = list(msg.iter_attachments())
            assert att.get_filename() == "会议纪要.txt" and att.get_content() == "第一项：预算\n"
        finally:
            imap.logout()
        # ... and the sender sees it read, by that colleague, and not yet by bob.
        await page.goto(web.url + "/message?folder=Sent&uid=1")
        table = page.locator("#read-status-table")
        await table.locator("tr[data-address='wangfang@city.test'] .rs-read time").wait_for()
        assert (await table.locator("tr[data-address='bob@city.test'] .rs-read").inner_text()).strip() == "未读"
        await ctx.close()
    finally:
        web.stop()
