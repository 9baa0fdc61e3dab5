"""Accessibility basics on every page, in Debian's headless Chromium (issue 10, must show).

Every page the webmail serves (mail, compose, settings, address book, approvals, the admin
console, the sign-in and code pages) is opened with data in it, and on each:
- every form control, button and link has an accessible name, as Chromium computes it
  (its accessibility tree over the DevTools protocol; placeholders and titles alone are
  what screen readers fall back to, so they do not count in the DOM check);
- every control hidden for now (a form shown later) is labelled in the DOM;
- the Tab key alone reaches every visible control, button and link (one radio per group),
  starting from the top of the page, so the main actions are usable by keyboard.
A full-page screenshot of each is kept in var/screenshots/pages/ (test artefacts; the other
browser tests keep theirs in var/screenshots/). A route table check keeps the walk complete: a new GET route is either walked here or named
as not a page (JSON, downloads, XML, the event stream, the mail's own sandboxed frame).
"""

from __future__ import annotations

import re
import smtplib
from urllib.parse import unquote

import pytest

from mailboxes.events import Sources
from mailboxes.held import HeldMail
from mailboxes.webhookendpoints import WebhookEndpoints
from mailserver.config import Config
from webmail.app import ROUTES

from .harness import PASSWORD, WebServer
from .mails import gbk_mail, html_mail
from .people import make_org
from .queueing import deferred_message
from .test_browser import SHOTS, chromium, send_over_smtp, sign_in  # noqa: F401 - chromium is the module's fixture
from .test_readstatus import _message, _submit

pytestmark = [pytest.mark.web, pytest.mark.asyncio(loop_scope="module")]

PAGE_SHOTS = SHOTS / "pages"  # one screenshot per walked page, kept as test artefacts
MAX_TABS = 400  # Tab presses per page at most (the longest page has about 120 stops)

# GET routes that are not pages a person fills in (their content type or purpose says why).
NOT_PAGES = {
    "/": "redirects to /mail or /login",
    "/admin": "redirects to /admin/accounts",
    "/message/body": "the mail's own HTML in the sandboxed frame",
    "/message/part": "an attachment download",
    "/events": "the server-sent event stream",
    "/settings/two-factor/qr.svg": "the QR code image (its page gives the secret as text too)",
    "/settings/mail-client/postroom.mobileconfig": "a download",
    "/.well-known/autoconfig/mail/config-v1.1.xml": "XML for mail clients",
    "/mail/config-v1.1.xml": "XML for mail clients",
    "/readstatus/{id}": "JSON",
    "/addressbook/complete": "JSON",
    "/documents/incoming/{id}/files/{n}": "a document's file download",
    "/admin/audit/export": "the audit search as a CSV download",
}
# Pages walked with check_page by tests/web/test_documents_browser.py, where a second site sends the documents.
WALKED_ELSEWHERE = {"/documents/incoming", "/documents/incoming/{id}", "/documents/sent", "/documents/sent/{id}"}

# What some walked pages must show, so that their controls are really on the page when checked.
SHOWS = {"/mail": "td.subject", "/message": "a[href^='/message/part']", "/admin/queue": "[id^=q-]",
         "/approvals": "[data-held-id]", "/admin/audit": "table", "/admin/accounts/{address}": "form", "/admin/groups/{address}": "form",
         "/admin/sources": "#src-list [id^=tok-] button"}

NO_HORIZONTAL_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth + 1"
# The elements that stick out past the right edge (the culprits of a sideways scroll), at most five.
WIDEST = """() => Array.from(document.querySelectorAll('body *'))
    .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1
                  || (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === 'visible'))
    .slice(-5).map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + '.' + el.className
                         + ' ' + Math.round(el.getBoundingClientRect().right))"""

CONTROL_ROLES = {"textbox", "searchbox", "combobox", "listbox", "checkbox", "radio", "spinbutton", "slider",
                 "switch", "button", "link", "menuitem", "tab"}

# Controls in the DOM without a label, an aria-label or a non-empty aria-labelledby (hidden ones too).
UNLABELLED_IN_DOM = """() => Array.from(document.querySelectorAll('input, select, textarea, button'))
    .filter(el => el.type !== 'hidden')
    .filter(el => {
        if (el.labels && Array.from(el.labels).some(l => l.textContent.trim())) return false;
        if ((el.getAttribute('aria-label') || '').trim()) return false;
        const ids = (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean);
        if (ids.some(id => { const t = document.getElementById(id); return t && t.textContent.trim(); }))
            return false;
        if (el.tagName === 'BUTTON' && el.textContent.trim()) return false;
        if (['submit', 'button', 'reset'].includes(el.type) && el.tagName === 'INPUT' && el.value.trim())
            return false;
        return true;
    })
    .map(el => el.outerHTML.slice(0, 200))"""

# Stamps every focusable element with its key; returns the keys of the visible, enabled ones.
FOCUSABLE = """() => {
    const keys = [];
    const all = document.querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex]');
    all.forEach((el, i) => {
        const key = el.type === 'radio' ? 'radio:' + (el.form ? el.form.id || el.form.action : '') + ':' + el.name
                                        : (el.id ? '#' + el.id : el.tagName.toLowerCase() + '[' + i + ']');
        el.dataset.a11yKey = key;
        if (el.type === 'hidden' || el.disabled) return;
        // tabindex=-1 takes a control out of the Tab order: that is a failure, not an exemption;
        // only other elements (focused by script) may carry it.
        if (el.getAttribute('tabindex') === '-1' && !el.matches('a[href], button, input, select, textarea, summary'))
            return;
        if (!el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') return;
        if (el.closest('[inert], [aria-hidden="true"]')) return;
        keys.push(key + ' ' + el.outerHTML.slice(0, 120));
    });
    return keys;
}"""

ACTIVE = "() => { const el = document.activeElement; return el && el !== document.body ? el.dataset.a11yKey || '?' + el.outerHTML.slice(0, 120) : null; }"


async def unnamed_in_tree(page) -> list[str]:
    """Controls and links that Chromium's accessibility tree gives no name."""
    cdp = await page.context.new_cdp_session(page)
    try:
        await cdp.send("DOM.getDocument", {"depth": 0})
        nodes = (await cdp.send("Accessibility.getFullAXTree"))["nodes"]
        bad = []
        for n in nodes:
            role = (n.get("role") or {}).get("value")
            if n.get("ignored") or role not in CONTROL_ROLES:
                continue
            if not str((n.get("name") or {}).get("value") or "").strip():
                node = (await cdp.send("DOM.describeNode", {"backendNodeId": n["backendDOMNodeId"]}))["node"]
                bad.append(f"{role}: <{node['nodeName'].lower()} {node.get('attributes')}>")
        return bad
    finally:
        await cdp.detach()


async def tab_walk(page) -> set[str]:
    """The keys of the elements the Tab key reaches, once round the page.

    From where the page put focus (an autofocus field, or the top); past the last stop focus
    leaves the document and the next Tab starts again at the top; the walk ends back where it began.
    """
    seen: list[str] = []
    left = 0
    for _ in range(MAX_TABS):
        await page.keyboard.press("Tab")
        key = await page.evaluate(ACTIVE)
        if key is None:  # past the last stop: focus left the document
            left += 1
            if left > 2:
                break
            continue
        if seen and key == seen[0]:
            break
        seen.append(key)
    return set(seen)


def shot_name(url: str) -> str:
    """The screenshot's file name for a page: its path and query as a readable slug."""
    path = url.split("://", 1)[-1].partition("/")[2]
    slug = re.sub(r"[^0-9A-Za-z@._-]+", "-", unquote(path)).strip("-") or "root"
    return re.sub(r"[^\w@.-]", "", slug)[:100] + ".png"


async def check_page(page, url: str, shows: str | None = None) -> list[str]:
    """What fails on the page at `url` (empty: labelled and keyboard-usable); `shows`: a selector it must have.

    A screenshot of the page is kept in var/screenshots/pages/ (a test artefact)."""
    r = await page.goto(url)
    assert r is not None and r.status == 200, (url, r and r.status)
    assert shows is None or await page.locator(shows).count(), (url, shows)
    PAGE_SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(PAGE_SHOTS / shot_name(url)), full_page=True)
    problems = [f"{url}: unnamed {x}" for x in await unnamed_in_tree(page)]
    problems += [f"{url}: unlabelled in the DOM {x}" for x in await page.evaluate(UNLABELLED_IN_DOM)]
    expected = {k.split(" ", 1)[0]: k for k in await page.evaluate(FOCUSABLE)}
    reached = await tab_walk(page)
    problems += [f"{url}: not reached by Tab: {expected[k]}" for k in expected if k not in reached]
    return problems


def _uid(web, word: str) -> int:
    """The UID of alice's INBOX message whose text has `word`."""
    async def go():
        ref = (await web.mb.store.folder(web.accounts["alice"], "INBOX")).ref
        [uid] = await web.mb.store.search_text(ref, None, word)
        return uid
    return web.run(go())


def _labels_web(tmp_path) -> WebServer:
    """The server with classification labels on, alice among the approvers (so /approvals has a held mail)."""
    srv = WebServer(tmp_path)
    values = {section: dict(keys) for section, keys in srv.config.values.items()}
    values["labels"].update(enabled=True, approvers="office@city.test")
    srv.config = Config(srv.config.path, values)
    return srv.start()


def _held_by_bob(web) -> None:
    raw = ("From: bob@city.test\r\nTo: wang@example.org\r\nSubject: 名单\r\nMessage-ID: <held@city.test>\r\n\r\n"
           "名单附后。\r\n").encode()
    with smtplib.SMTP("127.0.0.1", web.smtp.addresses["submission"][1], timeout=30) as s:
        s.login("bob@city.test", PASSWORD)
        assert s.sendmail("bob@city.test", ["wang@example.org"], raw) == {}


async def test_every_page_is_labelled_and_usable_by_keyboard(tmp_path, chromium):  # noqa: F811
    web = _labels_web(tmp_path)
    try:
        make_org(web)  # departments, accounts, groups, aliases; alice is an admin
        web.run(web.mb.directory.add_group("office@city.test", "办公室"))
        web.run(web.mb.directory.set_group_members("office@city.test", add=["alice@city.test"]))
        _held_by_bob(web)
        send_over_smtp(web, gbk_mail())
        send_over_smtp(web, html_mail("<p>季度通讯</p>", subject="Newsletter"))
        _submit(web, _message("<a11y@city.test>", "bob@city.test", "预算审批"), ["bob@city.test"])
        deferred_message(web)
        web.run(Sources(web.mb.router.central).add("oa"))  # a source with a token and a webhook to manage
        web.run(WebhookEndpoints(web.mb.router.central).set("oa", "https://oa.city.test/hooks/postroom"))
        held = web.run(HeldMail(web.mb.router.central).pending(10))
        assert held, "the mail to an outside address was not held"

        gbk = _uid(web, "各位同事")
        walked = {  # route -> the URL opened for it
            "/login": "/login",
            "/mail": "/mail?folder=INBOX",
            "/message": f"/message?folder=INBOX&uid={gbk}",  # GBK, with a Chinese-named attachment
            "/compose": "/compose",
            "/settings/two-factor": "/settings/two-factor",
            "/settings/password": "/settings/password",
            "/settings/app-passwords": "/settings/app-passwords",
            "/settings/mail-client": "/settings/mail-client",
            "/settings/mail": "/settings/mail",
            "/settings/notifications": "/settings/notifications",
            "/addressbook": "/addressbook?q=%E8%B4%A2",
            "/admin/accounts": "/admin/accounts",
            "/admin/accounts/{address}": "/admin/accounts/h1@city.test",
            "/admin/departments": "/admin/departments",
            "/admin/groups": "/admin/groups",
            "/admin/groups/{address}": "/admin/groups/hr-all@city.test",
            "/admin/aliases": "/admin/aliases",
            "/admin/queue": "/admin/queue",
            "/admin/dkim": "/admin/dkim",
            "/admin/dashboard": "/admin/dashboard",
            "/admin/audit": "/admin/audit",
            "/admin/holds": "/admin/holds",
            "/admin/sources": "/admin/sources",
            "/approvals": "/approvals",
            "/approvals/{id}": f"/approvals/{held[0].id}",
            "/login/code": "/login/code",
        }
        extra = {"/mail?folder=INBOX&q=%E5%AD%A3%E5%BA%A6": "td.subject",  # a search with hits
                 "/message?folder=Sent&uid=1": "#recall",  # a sent message with its read status and recall
                 f"/message?folder=INBOX&uid={_uid(web, 'newsletter')}": "iframe",  # HTML mail in its frame
                 f"/compose?mode=reply_all&folder=INBOX&uid={gbk}": "#to"}
        gets = {path for method, path, _ in ROUTES if method == "GET"}
        known = set(walked) | set(NOT_PAGES) | WALKED_ELSEWHERE
        assert gets == known, (gets - known, known - gets)

        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 1100, "height": 800})
        page = await ctx.new_page()
        problems = await check_page(page, web.url + "/login")
        await sign_in(page, web)
        for route, url in walked.items():
            if route not in ("/login", "/login/code"):
                problems += await check_page(page, web.url + url, SHOWS.get(route))
        for url, shows in extra.items():
            problems += await check_page(page, web.url + url, shows)
        await ctx.close()

        # Usable on a phone screen: no page scrolls sideways at a phone's width.
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
        page = await ctx.new_page()
        await sign_in(page, web)
        for url in [*(u for r, u in walked.items() if r not in ("/login", "/login/code")), *extra]:
            await page.goto(web.url + url)
            if not await page.evaluate(NO_HORIZONTAL_SCROLL):
                wide = await page.evaluate(WIDEST)
                problems.append(f"{url}: wider than a phone's screen: {wide}")
        await ctx.close()

        # The second step's page: an account with two-step sign-in on, after its password.
        from .test_twofactor import _enrol
        await _enrol(web)
        ctx = await chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})  # and a phone
        page = await ctx.new_page()
        await sign_in(page, web, landing="**/login/code**")
        problems += await check_page(page, page.url)
        await ctx.close()
        assert problems == [], "\n".join(problems)
        for url in [*walked.values(), *extra]:
            assert (PAGE_SHOTS / shot_name(web.url + url)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url
    finally:
        web.stop()
