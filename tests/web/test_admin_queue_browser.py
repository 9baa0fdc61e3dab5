"""The operations console in Debian's headless Chromium on a phone screen: a deferred message held, released, retried and deleted by keyboard; the dashboard's chart."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from .harness import WebServer
from .queueing import deferred_message, set_role
from .test_browser import _shot, assert_labelled, chromium, send_over_smtp, sign_in  # noqa: F401 - chromium is the fixture

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]

NO_HORIZONTAL_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth + 1"


async def _press(page, name: str, key: str, done: str) -> None:
    """Focus the button named `name` and press `key` on it; wait for the page the action redirects to."""
    button = page.get_by_role("button", name=name)
    await button.focus()
    await expect(button).to_be_focused()
    await page.keyboard.press(key)
    await page.wait_for_url(f"**done={done}&n=1")
    await expect(page.locator("#aq-notice")).to_be_visible()


async def test_an_admin_works_the_queue_and_reads_the_dashboard_in_chromium(tmp_path, chromium):  # noqa: F811
    web = WebServer(tmp_path).start()
    try:
        send_over_smtp(web, b"From: news@outside.test\r\nSubject: hello\r\n\r\ntoday's mail\r\n")
        qid = deferred_message(web)  # routed to a closed loopback port: tried once, refused, deferred
        set_role(web, "alice@city.test", "admin")
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})  # a phone
        page = await ctx.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        await sign_in(page, web)

        await page.goto(web.url + "/admin/queue")
        await assert_labelled(page)
        row = page.locator(f"#q-{qid}")
        await expect(row.locator(".aq-state")).to_have_text("延迟重试")
        assert await row.locator(".aq-error").inner_text() not in ("", "–")  # the refused connection's error
        assert await page.evaluate(NO_HORIZONTAL_SCROLL)
        await page.screenshot(path=str(_shot("admin-queue-zh-phone.png")), full_page=True)
        # The filter by keyboard: route field, Tab to the state list, Tab to the button.
        await page.get_by_label("路由", exact=True).fill("far.test")
        await page.keyboard.press("Tab")
        await expect(page.get_by_label("状态", exact=True)).to_be_focused()
        await page.keyboard.press("Tab")
        await expect(page.locator("#aq-filter")).to_be_focused()
        await page.keyboard.press("Enter")
        await page.wait_for_url("**route=far.test**")
        await expect(page.locator(f"#q-{qid}")).to_have_count(1)

        await _press(page, f"暂停 {qid}", "Enter", "hold")
        await expect(page.locator(f"#q-{qid} .aq-state")).to_have_text("已暂停")
        await _press(page, f"恢复 {qid}", "Enter", "release")
        await _press(page, f"立即重试 {qid}", "Space", "retry")
        await _press(page, f"删除 {qid}", "Enter", "delete")
        await expect(page.locator(f"#q-{qid}")).to_have_count(0)
        actions = [r["action"] for r in reversed(web.run(web.mb.directory.audit_entries(4)))]
        assert actions == ["queue.hold", "queue.release", "queue.retry", "queue.delete"]

        deferred_message(web, "other@far.test")  # something for the dashboard's queue figures
        await page.get_by_role("link", name="概览").click()
        await page.wait_for_url("**/admin/dashboard")
        chart = page.get_by_role("img", name="近 14 天每日邮件量")
        await expect(chart).to_be_visible()
        assert (await chart.bounding_box())["width"] <= 390
        await expect(chart.locator("rect.s-delivered")).to_have_count(1)  # today's delivered message
        await expect(page.get_by_role("img", name="队列状况")).to_be_visible()
        await expect(page.locator("#dash-deferred li")).to_have_count(1)
        await page.get_by_text("以表格显示").click()
        await expect(page.locator("#volume-table tbody tr")).to_have_count(14)
        assert await page.evaluate(NO_HORIZONTAL_SCROLL)
        await page.screenshot(path=str(_shot("admin-dashboard-zh-phone.png")), full_page=True)
        assert refused == []
        await ctx.close()
    finally:
        web.stop()
