"""The webmail in Debian's headless Chromium (Playwright with /usr/bin/chromium, no browser download).

A hostile HTML mail arrives over SMTP; the reader signs in by keyboard, sees the folder and its
unread count, opens the mail: no script runs and nothing is fetched from the remote host (a
loopback HTTP server records every request) until the reader allows images; IMAP then sees the
message \\Seen; the interface switches to English. Screenshots of the pages are kept in
var/screenshots/ as test artefacts.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import http.server
import imaplib
import os
import shutil
import smtplib
import threading
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import expect

from .harness import PASSWORD, WebServer
from .mails import gbk_mail, html_mail

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/bin/chromium"
TABS = 5  # the corpus is read in this many tabs at once
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


class Tracker:
    """A loopback HTTP server standing in for a remote host: it records every request it gets."""

    def __init__(self) -> None:
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

            do_POST = do_GET

            def log_message(self, *args):
                pass
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium():
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed; `make test` installs it")
        pytest.skip("Debian's chromium is not installed (`make test` installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        await browser.close()


@pytest.fixture
def tracker():
    t = Tracker()
    yield t
    t.close()


def hostile_html(remote: str) -> str:
    return (f'<h1>季度通讯</h1><p id="greeting">Hello from the newsletter</p>'
            f'<script>fetch("{remote}/script-ran"); parent.document.title = "pwned";</script>'
            f'<img src="{remote}/remote-image.gif" alt="tracker">'
            f'<img src="x" onerror="fetch(\'{remote}/onerror-ran\')">'
            f'<div style="background-image:url({remote}/css-image.gif)">css</div>'
            f'<a href="javascript:fetch(\'{remote}/js-link\')">link</a>')


UNLABELLED = """() => Array.from(document.querySelectorAll('input, select, textarea, button'))
    .filter(el => el.type !== 'hidden')
    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !(el.tagName === 'BUTTON' && el.textContent.trim()))
    .map(el => el.outerHTML)"""


async def assert_labelled(page) -> None:
    """Accessibility basics: every form control has a label (or is a button with text)."""
    assert await page.evaluate(UNLABELLED) == []


async def sign_in(page, web: WebServer, address: str = "alice@city.test", *, landing: str = "**/mail") -> None:
    """Through the sign-in form by its labels (Chinese, the default), as alice unless told; waits for `landing`."""
    await page.goto(web.url + "/login")
    await page.get_by_label("邮箱地址").fill(address)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url(landing)


def send_over_smtp(web: WebServer, raw: bytes, to: str = "alice@city.test") -> None:
    with smtplib.SMTP("127.0.0.1", web.smtp_port, timeout=30) as s:
        s.sendmail("news@outside.test", [to], raw)


async def test_read_hostile_html_mail_in_chromium(tmp_path, chromium, tracker):
    web = WebServer(tmp_path).start()
    try:
        send_over_smtp(web, html_mail(hostile_html(tracker.url), subject="Newsletter with a tracker"))
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 1100, "height": 800})
        page = await ctx.new_page()
        ran = []
        page.on("dialog", lambda d: ran.append(d.message))
        await page.goto(web.url + "/")
        await assert_labelled(page)
        # Sign in by keyboard only: the address field has focus, Tab to the password, Enter submits.
        await expect(page.locator("#address")).to_be_focused()
        await page.keyboard.type("alice@city.test")
        await page.keyboard.press("Tab")
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press("Enter")
        await page.wait_for_url("**/mail")
        assert await page.get_attribute("html", "lang") == "zh-CN"
        inbox = page.locator('.folders a[data-folder="INBOX"]')
        assert await inbox.inner_text() == "收件箱"
        assert await page.locator('.folders li.current .count').inner_text() == "1"
        row = page.locator("tr.unread", has_text="Newsletter with a tracker")
        assert await row.count() == 1
        await page.screenshot(path=str(_shot("inbox-zh.png")))
        await assert_labelled(page)
        await row.locator("a").click()
        await page.wait_for_url("**/message?**")
        frame = page.frame_locator("#mail-body")
        await frame.get_by_text("Hello from the newsletter").wait_for()
        await page.wait_for_load_state("networkidle")
        assert await page.title() != "pwned" and ran == []
        assert tracker.seen == []  # no script, no remote image, no CSS image, nothing
        assert await page.locator("#images-blocked").is_visible()
        await page.screenshot(path=str(_shot("message-zh.png")), full_page=True)
        await assert_labelled(page)
        # IMAP sees the message as read.
        imap = imaplib.IMAP4("127.0.0.1", web.port, timeout=30)
        try:
            imap.login("alice@city.test", PASSWORD)
            imap.select("INBOX")
            typ, data = imap.fetch("1", "(FLAGS)")
            assert b"\\Seen" in data[0]
        finally:
            imap.logout()
        # The reader allows remote images: now (and only now) the image is fetched; script still never runs.
        await page.click("#show-images")
        await page.wait_for_url("**images=1**")
        await frame.get_by_text("Hello from the newsletter").wait_for()
        await page.wait_for_load_state("networkidle")
        assert "/remote-image.gif" in tracker.seen
        assert not {"/script-ran", "/onerror-ran", "/js-link"} & set(tracker.seen)
        # Switch to English.
        await page.select_option("#lang-select", "en")
        await page.click("#lang-switch")
        await page.wait_for_load_state()
        assert await page.get_attribute("html", "lang") == "en"
        assert await page.locator('.folders a[data-folder="INBOX"]').inner_text() == "Inbox"
        assert await page.locator("#sign-out").inner_text() == "Sign out"
        await ctx.close()
    finally:
        web.stop()


async def test_gbk_mail_and_chinese_attachment_download_on_a_phone(tmp_path, chromium):
    web = WebServer(tmp_path).start()
    try:
        send_over_smtp(web, gbk_mail())
        ctx = await chromium.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True, has_touch=True,
                                         accept_downloads=True)
        page = await ctx.new_page()
        await sign_in(page, web)
        # Usable on a phone: nothing wider than the screen.
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await page.get_by_role("link", name="关于第三季度报告的通知").click()
        await page.wait_for_url("**/message?**")
        assert "王芳" in await page.locator("#from").inner_text()
        assert "各位同事" in await page.locator("#mail-text").inner_text()
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await page.screenshot(path=str(_shot("message-phone.png")), full_page=True)
        async with page.expect_download() as info:
            await page.get_by_role("link", name="季度报告（第三季度）.pdf").click()
        download = await info.value
        assert download.suggested_filename == "季度报告（第三季度）.pdf"
        await ctx.close()
    finally:
        web.stop()


def _shot(name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / name


async def test_xss_corpus_in_html_mail_runs_no_script_and_fetches_nothing(tmp_path, chromium, tracker):
    """Every vector in its own mail, each opened in Chromium: nothing reaches the remote host, no script runs.

    Two oracles: the tracker's request log (nothing left for the remote host) and the console
    (every script in the corpus first logs SCRIPT_RAN, so a script that ran but whose request
    the CSP stopped is still seen). The control first renders the same vectors unsanitised in a
    plain page, to show that both oracles see them when nothing stops them.
    """
    from .xss_corpus import SCRIPT_RAN, VECTORS, live

    bodies = [live(v, tracker.url) for v in VECTORS]
    ctx = await chromium.new_context(locale="zh-CN")
    ran = []
    ctx.on("console", lambda m: ran.append(m.text) if SCRIPT_RAN in m.text else None)
    control = await ctx.new_page()
    await control.set_content("".join(bodies), wait_until="load")
    await control.wait_for_load_state("networkidle")
    fired = {p.split("/")[1].split(".")[0].rstrip("i") for p in tracker.seen}
    assert len(fired) >= 15, fired  # the vectors are live when nothing stops them
    assert len(set(ran)) >= 5, ran  # and their scripts run (each logs its own vN)
    await control.close()
    ran.clear()
    tracker.seen.clear()
    web = WebServer(tmp_path).start()
    try:
        from .mails import html_mail

        await web.loop_run(web.deliver_many("alice", [html_mail(f"<p>vector {i}</p>{body}", subject=f"vector {i}",
                                                                 text=None) for i, body in enumerate(bodies, 1)]))
        page = await ctx.new_page()
        dialogs = []
        page.on("dialog", lambda d: dialogs.append(("dialog", d.message)))
        await sign_in(page, web)
        tabs = [page] + [await ctx.new_page() for _ in range(TABS - 1)]
        for tab in tabs[1:]:
            tab.on("dialog", lambda d: dialogs.append(("dialog", d.message)))
        ctx.on("page", lambda p: dialogs.append(("popup", p.url)))  # a window opened by a mail

        async def read(tab, uids):
            for uid in uids:
                await tab.goto(f"{web.url}/message?folder=INBOX&uid={uid}", wait_until="load")
                await tab.frame_locator("#mail-body").get_by_text(f"vector {uid}", exact=True).wait_for()
        uids = list(range(1, len(bodies) + 1))
        await asyncio.gather(*(read(tab, uids[k::TABS]) for k, tab in enumerate(tabs)))
        await page.wait_for_load_state("networkidle")
        assert tracker.seen == [] and dialogs == [] and ran == []
    finally:
        await ctx.close()
        web.stop()


async def test_compose_with_an_attachment_in_chromium_reaches_a_colleague_over_imap(tmp_path, chromium):
    web = WebServer(tmp_path).start()
    upload = tmp_path / "预算表.csv"
    upload.write_text("项目,金额\n办公,1200\n", encoding="utf-8")
    try:
        ctx = await chromium.new_context(locale="zh-CN")
        page = await ctx.new_page()
        await sign_in(page, web)
        await page.click("#compose")
        await page.get_by_label("收件人").fill("bob@city.test")
        await page.get_by_label("主题").fill("预算表")
        await page.locator("#editor").wait_for()  # compose.js has put the editor in the textarea's place
        await page.get_by_label("正文").fill("请审阅。")
        await page.get_by_label("添加附件").set_input_files(str(upload))
        await page.screenshot(path=str(_shot("compose-zh.png")), full_page=True)
        await assert_labelled(page)
        await page.click("#send")
        await page.wait_for_url("**folder=Sent**")
        assert await page.locator("tr", has_text="预算表").count() == 1
        await ctx.close()
        imap = imaplib.IMAP4("127.0.0.1", web.port, timeout=30)
        try:
            imap.login("bob@city.test", PASSWORD)
            imap.select("INBOX")
            typ, data = imap.fetch("1", "(BODY.PEEK[])")
            msg = email.message_from_bytes(data[0][1], policy=email.policy.default)
            assert msg["Subject"] == "预算表" and "请审阅" in msg.get_body(("plain",)).get_content()
            [att] = list(msg.iter_attachments())
            assert att.get_filename() == "预算表.csv" and att.get_content().startswith("项目,金额")
        finally:
            imap.logout()
    finally:
        web.stop()


async def test_new_mail_appears_without_reloading(tmp_path, chromium):
    web = WebServer(tmp_path).start()
    try:
        ctx = await chromium.new_context(locale="zh-CN")
        page = await ctx.new_page()
        await sign_in(page, web)
        assert await page.locator(".empty").count() == 1
        async with page.expect_response("**/events"):  # the page is listening before the mail arrives
            await page.reload()
        await page.evaluate("window.__sameDocument = true")
        send_over_smtp(web, html_mail("<p>hi</p>", subject="Arrived while looking"))
        await page.locator("tr.unread", has_text="Arrived while looking").wait_for()
        assert await page.evaluate("window.__sameDocument === true")  # no navigation happened
        assert await page.locator('.folders li.current .count').inner_text() == "1"
        await ctx.close()
    finally:
        web.stop()
