"""Compose uploads in Chromium: a few MB with a Chinese name uploaded at once with a progress bar to 100 %, a file too
big refused in words, one removed, the mail sent to a colleague who gets the attachment byte-exact over IMAP."""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import os

import pytest
from playwright.async_api import expect

from webmail.views.uploads import UPLOADS

from .harness import PASSWORD, WebServer
from .test_browser import _shot, assert_labelled, chromium, sign_in  # noqa: F401 - the module's browser fixture

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]

NAME = "第三季度 财务报表（终稿）.xlsx"
# Records every value the progress bars take (the page's CSP allows no inline script; evaluate() is not inline).
WATCH = """() => {
  window.__progress = [];
  new MutationObserver(() => {
    document.querySelectorAll("#uploads progress").forEach(p => window.__progress.push(p.value));
  }).observe(document.getElementById("uploads"), {subtree: true, childList: true, attributes: true,
                                                  attributeFilter: ["value"]});
}"""


def _inbox(web: WebServer, user: str) -> list[bytes]:
    imap = imaplib.IMAP4("127.0.0.1", web.port, timeout=30)
    try:
        imap.login(f"{user}@city.test", PASSWORD)
        imap.select("INBOX")
        typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        return [d[1] for d in data if isinstance(d, tuple)] if typ == "OK" and data != [None] else []
    finally:
        imap.logout()


async def test_attachments_upload_with_progress_and_arrive_byte_exact(tmp_path, chromium):  # noqa: F811
    web = WebServer(tmp_path).start()
    spool = web.web.app[UPLOADS]
    spool.max_file_bytes = 5 << 20
    content = os.urandom(4 << 20) + "表尾".encode()
    (tmp_path / "big").mkdir()
    good, big, other = tmp_path / NAME, tmp_path / "big" / "录像.mp4", tmp_path / "临时.txt"
    good.write_bytes(content)
    big.write_bytes(b"\0" * (6 << 20))
    other.write_text("不要了", encoding="utf-8")
    small = [tmp_path / f"附表{i}.csv" for i in (1, 2)]  # four files to send: they queue two at a time
    for i, p in enumerate(small):
        p.write_bytes(f"附表,{i}\n".encode())
    try:
        ctx = await chromium.new_context(locale="zh-CN")
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await sign_in(page, web)
        await page.click("#compose")
        await page.locator("#uploads").wait_for(state="attached")  # the click navigates: the compose page first
        await page.evaluate(WATCH)
        await page.get_by_label("收件人").fill("bob@city.test")
        await page.get_by_label("主题").fill("财务报表")
        await page.locator("#editor").wait_for()  # compose.js has put the editor in the textarea's place
        await page.get_by_label("正文").fill("附件是报表。")
        await page.get_by_label("添加附件").set_input_files([str(good), str(big), str(other), *map(str, small)])

        bar = page.get_by_label(f"“{NAME}”的上传进度")
        await expect(bar).to_have_attribute("value", "100", timeout=30_000)
        row = page.locator("#uploads li", has_text=NAME)
        await expect(row).to_contain_text("已上传")
        too_big = page.locator("#uploads li", has_text="录像.mp4").get_by_role("alert")
        await expect(too_big).to_have_text("“录像.mp4”太大，无法添加：每个文件最大 5 MB。")
        for name in ("临时.txt", "附表1.csv", "附表2.csv"):
            await expect(page.get_by_label(f"“{name}”的上传进度")).to_have_attribute("value", "100")
            # 100 % comes with the last bytes sent; "已上传" with the server's 201, after the spool has the file
            await expect(page.locator("#uploads li", has_text=name)).to_contain_text("已上传")
        seen = await page.evaluate("() => window.__progress")
        assert seen and seen[-1] == 100 and all(0 <= v <= 100 for v in seen)
        assert len(spool.entries(web.accounts["alice"].id)) == 4  # the big one never left the browser

        await page.get_by_role("button", name="移除附件“临时.txt”").click()  # keyboard-reachable, labelled
        await expect(page.locator("#uploads li", has_text="临时.txt")).to_have_count(0)
        await page.get_by_role("button", name="移除附件“录像.mp4”").click()
        await expect(page.locator("#uploads li")).to_have_count(3)
        await expect(page.get_by_label("添加附件")).to_be_focused()
        await assert_labelled(page)
        await page.screenshot(path=str(_shot("compose-upload-zh.png")), full_page=True)
        await page.click("#send")
        await page.wait_for_url("**folder=Sent**")
        await ctx.close()
        assert errors == []

        [raw] = _inbox(web, "bob")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["Subject"] == "财务报表"
        sent = {a.get_filename(): a.get_payload(decode=True) for a in msg.iter_attachments()}
        assert sent == {NAME: content, "附表1.csv": "附表,0\n".encode(), "附表2.csv": "附表,1\n".encode()}  # not the removed one
        assert spool.entries(web.accounts["alice"].id) == []
    finally:
        web.stop()


async def test_files_chosen_before_the_upload_script_runs_are_uploaded(tmp_path, chromium):  # noqa: F811
    """On a slow link the file can be chosen before uploads.js has run: it is uploaded when the script comes.
    (Its `change` event came before the listener, and the file was lost until the form was sent.)"""
    web = WebServer(tmp_path).start()
    late = tmp_path / "早选.txt"
    late.write_text("先选的文件", encoding="utf-8")
    try:
        ctx = await chromium.new_context(locale="zh-CN")
        page = await ctx.new_page()
        await sign_in(page, web)
        release = asyncio.Event()
        held: list[str] = []

        async def hold(route) -> None:
            held.append(route.request.url)
            await release.wait()
            await route.continue_()
        await page.route("**/uploads.js*", hold)
        await page.click("#compose")
        await page.get_by_label("添加附件").set_input_files([str(late)])
        assert held, "uploads.js was not held back"
        release.set()
        await expect(page.get_by_label("“早选.txt”的上传进度")).to_have_attribute("value", "100", timeout=30_000)
        assert [e.filename for e in web.web.app[UPLOADS].entries(web.accounts["alice"].id)] == ["早选.txt"]
        await ctx.close()
    finally:
        web.stop()
