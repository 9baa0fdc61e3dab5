"""Official documents (issue 12): the registrars' 收文 list, reading page, file downloads and 签收; the senders' 发文 tracking list and per-document table.

What the pages may show and do is decided by the object the composition root passes in
(bridges.docpages.DocumentPages, stored under DOCUMENTS): the same rules and the same code
path as the documents API (`POST /api/v1/incoming/{id}/sign`, `postroom dispatch sign`). It
raises the store's errors, which sessions.errors_middleware turns into 403 (not a registrar or
dispatcher) and 404 (an id that is unknown, of another site, or another dispatcher's). Without
that object (a server without documents) every page is 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from mailboxes.mailsettings import OOO_ZONE as LOCAL_ZONE  # the bureaus' clock: China Standard Time

from .. import i18n, render
from ..context import LOCALE, WEBMAIL
from ..sessions import require_account
from .message import DOWNLOAD_CSP

DOCUMENTS: web.AppKey = web.AppKey("documents", object)  # a bridges.docpages.DocumentPages, or absent
PAGE_SIZE = 50  # documents per list page
MAX_ID_DIGITS = 18
MAX_PAGE = 100_000  # a page number beyond any real register (keeps the OFFSET bounded)
STEPS = ("queued", "sent", "delivered", "registered", "signed")


def _pages(request: web.Request) -> Any:
    found = request.app.get(DOCUMENTS)
    if found is None:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found"))
    return found


def _number(request: web.Request, name: str) -> int:
    text = request.match_info.get(name, "")
    if not text.isascii() or not text.isdigit() or len(text) > MAX_ID_DIGITS:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found"))
    return int(text)


def _page_number(request: web.Request) -> int:
    text = request.query.get("page", "1")
    return min(int(text), MAX_PAGE) if text.isascii() and text.isdigit() and 0 < len(text) < 7 and int(text) else 1


def when(value: datetime | None) -> str:
    """A time as the bureaus read it (China Standard Time, to the minute); "" for not yet."""
    return "" if value is None else value.astimezone(LOCAL_ZONE).strftime("%Y-%m-%d %H:%M")


def _paging(base: str, page: int, total: int) -> dict[str, Any]:
    pages = max(1, -(-total // PAGE_SIZE))
    return {"page": page, "pages": pages, "count": total,
            "prev_href": f"{base}?page={page - 1}" if page > 1 else "",
            "next_href": f"{base}?page={page + 1}" if page < pages else ""}


async def incoming_list(request: web.Request) -> web.Response:
    """GET /documents/incoming: registered documents, waiting 特急 and 加急 first, then newest first."""
    account = require_account(request)
    page = _page_number(request)
    regs, total, waiting = await _pages(request).incoming_page(account, offset=(page - 1) * PAGE_SIZE,
                                                               limit=PAGE_SIZE)
    return request.app[WEBMAIL].render(request, "documents_incoming.html", regs=regs, waiting=waiting, when=when,
                                       **_paging("/documents/incoming", page, total))


async def incoming_view(request: web.Request) -> web.Response:
    """GET /documents/incoming/{id}: the GB/T 9704 elements, the files, and the 签收 button."""
    account = require_account(request)
    pages = _pages(request)
    inc = await pages.incoming(account, _number(request, "id"))
    return request.app[WEBMAIL].render(request, "documents_incoming_view.html", reg=inc.registration,
                                       doc=inc.document, when=when, signed=request.query.get("signed", ""),
                                       names=await pages.partner_names())


async def incoming_file(request: web.Request) -> web.Response:
    """GET /documents/incoming/{id}/files/{n}: one file, named as the manifest names it (RFC 6266)."""
    account = require_account(request)
    name, _media_type, data = await _pages(request).incoming_file(account, _number(request, "id"),
                                                                  _number(request, "n"))
    response = web.Response(body=data, content_type="application/octet-stream")  # as /message/part: never rendered
    response.headers["Content-Disposition"] = render.content_disposition(name, "document")
    response.headers["Content-Security-Policy"] = DOWNLOAD_CSP
    return response


async def sign(request: web.Request) -> web.Response:
    """POST /documents/incoming/{id}/sign: 签收 as the signed-in registrar; the receipt goes back to the sender."""
    account = require_account(request)
    reg_id = _number(request, "id")
    _reg, new = await _pages(request).sign(account, reg_id)
    raise web.HTTPSeeOther(f"/documents/incoming/{reg_id}?signed={'done' if new else 'already'}")


async def sent_list(request: web.Request) -> web.Response:
    """GET /documents/sent: dispatched documents this account may track, newest first, with each one's progress."""
    account = require_account(request)
    pages = _pages(request)
    page = _page_number(request)
    docs, total = await pages.sent_page(account, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    shown = [(rows, [r.org for r in rows if pages.overdue(r)]) for rows in docs]  # with the overdue organisations
    return request.app[WEBMAIL].render(request, "documents_sent.html", docs=shown,
                                       **_paging("/documents/sent", page, total))


async def sent_view(request: web.Request) -> web.Response:
    """GET /documents/sent/{id}: per recipient organisation, the time of each step; overdue urgent ones marked."""
    account = require_account(request)
    pages = _pages(request)
    rows = await pages.sent(account, _number(request, "id"))
    return request.app[WEBMAIL].render(request, "documents_sent_view.html", doc=rows[0], rows=rows, steps=STEPS,
                                       overdue=pages.overdue, when=when, names=await pages.partner_names())


ROUTES = (
    ("GET", "/documents/incoming", incoming_list),
    ("GET", "/documents/incoming/{id}", incoming_view),
    ("GET", "/documents/incoming/{id}/files/{n}", incoming_file),
    ("POST", "/documents/incoming/{id}/sign", sign),
    ("GET", "/documents/sent", sent_list),
    ("GET", "/documents/sent/{id}", sent_view),
)
