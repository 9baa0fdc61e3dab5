"""Compose in Chromium: the rich-text editor (bold), a Chinese-named attachment, a draft saved, reloaded, continued and sent."""

from __future__ import annotations

import email
import email.policy
import imaplib

import pytest

from .harness import PASSWORD, WebServer
from .test_browser import _shot, assert_labelled, chromium, sign_in  # noqa: F401 - the module's browser fixture

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]


def _fetch(web: WebServer, user: str, folder: str) -> list[tuple[bytes, bytes]]:
    imap = imaplib.IMAP4("127.0.0.1", web.port, timeout=30)
    try:
        imap.login(f"{user}@city.test", PASSWORD)
        assert imap.select(folder)[0] == "OK"
        typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[])")
        return [(d[0], d[1]) for d in data if isinstance(d, tuple)] if typ == "OK" and data != [None] else []
    finally:
        imap.logout()


async def test_rich_text_draft_with_a_chinese_attachment_is_continued_and_sent(tmp_path, chromium):  # noqa: F811
    web = WebServer(tmp_path).start()
    content = "项目,金额\n办公,1200\n".encode() + bytes(range(256))
    upload = tmp_path / "二〇二六年预算（草案）.bin"
    upload.write_bytes(content)
    try:
        ctx = await chromium.new_context(locale="zh-CN")
        page = await ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await sign_in(page, web)
        await page.click("#compose")
        await page.get_by_label("收件人").fill("bob@city.test")
        await page.get_by_label("主题").fill("预算草案")
        await page.locator("#editor").wait_for()  # compose.js has put the editor in the textarea's place
        editor = page.get_by_label("正文")  # the editor has taken the textarea's place and label
        assert await editor.get_attribute("id") == "editor" and await page.locator("textarea").count() == 0
        await editor.click()
        await page.keyboard.type("请审阅 ")
        await page.get_by_role("button", name="加粗").click()
        await page.keyboard.type("今天")
        await page.get_by_role("button", name="加粗").click()
        await page.keyboard.type(" 之内。")
        await page.get_by_label("添加附件").set_input_files(str(upload))
        await assert_labelled(page)
        await page.click("#save-draft")
        await page.wait_for_url("**draft=**")
        assert await page.locator("#draft-saved").is_visible()

        await page.reload()  # continue later: the editor, the fields and the attachment are back
        assert "<b>今天</b>" in await editor.inner_html()
        assert await page.get_by_label("收件人").input_value() == "bob@city.test"
        assert "二〇二六年预算（草案）.bin" in await page.locator(".kept-attachments").inner_text()
        [(meta, _)] = _fetch(web, "alice", "Drafts")
        assert b"\\Draft" in meta
        await editor.click()
        await page.keyboard.press("End")
        await page.keyboard.type(" 谢谢")
        await page.screenshot(path=str(_shot("compose-rich-draft-zh.png")), full_page=True)
        await page.click("#send")
        await page.wait_for_url("**folder=Sent**")
        await ctx.close()
        assert errors == []

        [(_, raw)] = _fetch(web, "bob", "INBOX")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["Subject"] == "预算草案"
        html = msg.get_body(("html",)).get_content()
        assert "<b>今天</b>" in html and "谢谢" in html
        assert "请审阅 今天 之内。" in msg.get_body(("plain",)).get_content()
        [att] = list(msg.iter_attachments())
        assert att.get_filename() == "二〇二六年预算（草案）.bin" and att.get_payload(decode=True) == content
        assert _fetch(web, "alice", "Drafts") == [] and len(_fetch(web, "alice", "Sent")) == 1
    finally:
        web.stop()
