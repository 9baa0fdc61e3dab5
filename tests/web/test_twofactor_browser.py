"""TOTP in Chromium: enrol from the QR page, sign in with a pyotp code, wrong and replayed codes refused, a recovery code works once."""

from __future__ import annotations

import time

import pyotp
import pytest

from .harness import WebServer
from .test_browser import SHOTS, assert_labelled, chromium, sign_in  # noqa: F401 - `chromium` is a fixture

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]


def _wrong_code(totp: pyotp.TOTP) -> str:
    now = time.time()
    near = {totp.at(now + 30 * k) for k in range(-2, 3)}
    return next(c for c in ("000000", "111111", "222222") if c not in near)


async def _password_step(page, web: WebServer) -> None:
    await page.goto(web.url + "/login")
    await page.get_by_label("邮箱地址").fill("alice@city.test")
    await page.get_by_label("密码").fill("secret-pw")
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url("**/login/code")


async def _code_step(page, code: str, *, ok: bool) -> None:
    await page.get_by_label("验证码").fill(code)
    await page.get_by_role("button", name="验证").click()
    if ok:
        await page.wait_for_url("**/mail")
    else:
        await page.wait_for_load_state()
        assert page.url.endswith("/login/code")
        assert await page.locator('[role="alert"]').is_visible()


async def _sign_out(page) -> None:
    await page.locator("#sign-out").click()
    await page.wait_for_url("**/login")


async def test_totp_enrolment_and_sign_in_in_chromium(tmp_path, chromium):
    web = WebServer(tmp_path).start()
    try:
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})  # a phone
        page = await ctx.new_page()
        await sign_in(page, web)
        await page.goto(web.url + "/settings/two-factor")
        await page.locator("#tf-begin").click()
        await page.wait_for_selector("#tf-secret")
        await assert_labelled(page)
        # The QR code is an SVG from our own origin and renders under the strict CSP.
        # (waited for: the page is shown before the image has loaded; a blocked image never gets a width)
        # img.decode() settles once the image is decoded (and rejects for a blocked or broken one).
        # Not wait_for_function: its polling evaluates a string in the page, which our CSP forbids.
        width = await page.locator("#tf-qr").evaluate("img => img.decode().then(() => img.naturalWidth)")
        assert width > 0
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / "two-factor-enrol.png"), full_page=True)
        totp = pyotp.TOTP((await page.locator("#tf-secret").inner_text()).replace(" ", ""))
        await page.get_by_label("验证码").fill(_wrong_code(totp))
        await page.locator("#tf-confirm").click()
        await page.wait_for_selector('[role="alert"]')
        await page.get_by_label("验证码").fill(totp.now())
        await page.locator("#tf-confirm").click()
        await page.wait_for_selector("#recovery-codes")
        recovery = [c.strip() for c in await page.locator("#recovery-codes code").all_inner_texts()]
        assert len(recovery) == 10
        await _sign_out(page)

        # The password alone is not a session: the mail stays closed until the code.
        await _password_step(page, web)
        await page.goto(web.url + "/mail")
        assert page.url.endswith("/login")
        await _password_step(page, web)
        await assert_labelled(page)
        await _code_step(page, _wrong_code(totp), ok=False)
        code = totp.at(time.time() + 30)  # the next step's (±1 step of skew): not the one that confirmed
        await _code_step(page, code, ok=True)
        await _sign_out(page)

        await _password_step(page, web)
        await _code_step(page, code, ok=False)  # replayed (RFC 6238 §5.2)
        await _code_step(page, recovery[0], ok=True)
        await _sign_out(page)
        await _password_step(page, web)
        await _code_step(page, recovery[0], ok=False)  # spent
        await _code_step(page, recovery[1], ok=True)
        await page.goto(web.url + "/settings/two-factor")
        assert "8" in await page.locator("#tf-status").inner_text()
        await ctx.close()
    finally:
        web.stop()
