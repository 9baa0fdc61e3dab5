"""Read status shown to the sender in Chromium (issue 10, must show): the per-recipient table under a Sent message, and recall."""

from __future__ import annotations

import pytest

from .harness import WebServer
from .test_browser import _shot, assert_labelled, chromium, sign_in  # noqa: F401 - the module's browser fixture
from .test_readstatus import _count, _imap, _message, _submit

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]


async def test_sender_sees_who_read_it_and_recalls_an_unread_one(tmp_path, chromium):  # noqa: F811
    web = WebServer(tmp_path).start()
    try:
        await web.loop_run(web.add_account("carol"))
        _submit(web, _message("<rs-b1@city.test>", "bob@city.test, carol@city.test", "预算审批"),
                ["bob@city.test", "carol@city.test"])
        _submit(web, _message("<rs-b2@city.test>", "carol@city.test", "发错了"), ["carol@city.test"])
        bob = _imap(web, "bob")
        try:
            bob.select("INBOX")
            assert bob.fetch("1", "(BODY[])")[0] == "OK"  # sets \Seen
        finally:
            bob.logout()

        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})  # a phone
        page = await ctx.new_page()
        await sign_in(page, web)
        await page.goto(web.url + "/message?folder=Sent&uid=1")
        table = page.locator("#read-status-table")
        await table.wait_for()
        bob_row = table.locator("tr[data-address='bob@city.test']")
        assert await bob_row.locator(".rs-read time").count() == 1  # read, with its time
        assert (await table.locator("tr[data-address='carol@city.test'] .rs-read").inner_text()).strip() == "未读"
        assert await page.locator("#recall").count() == 0  # bob read it: no recall offered
        await page.screenshot(path=str(_shot("read-status-zh.png")), full_page=True)

        await page.goto(web.url + "/message?folder=Sent&uid=2")
        await assert_labelled(page)
        await page.locator("#recall").focus()
        await page.keyboard.press("Enter")  # by keyboard
        await page.wait_for_url("**recall=done**")
        assert "已撤回" in await page.locator("#recall-notice").inner_text()
        assert (await page.locator("tr[data-address='carol@city.test'] .rs-recalled").inner_text()).strip() == "已撤回"
        await page.screenshot(path=str(_shot("recalled-zh.png")), full_page=True)
        await ctx.close()
        assert _count(web, "carol") == 1  # the first message stays, the recalled one is gone
    finally:
        web.stop()
