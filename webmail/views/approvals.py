"""Approvals (issue 13): the approvers' list of held mail, the held message, approve and reject with a reason.

The office (members of the configured approvers' group) sees every held message but
its own; a department leader sees those it was asked to decide (delivery.approval).
For anyone else every page and id is "not found" (404), as for an id that does not exist.
"""

from __future__ import annotations

from aiohttp import web

from delivery.labels import HEADER
from mailboxes.errors import InvalidInput, NotFound

from .. import i18n
from ..context import ACCOUNT, APPROVALS_BADGE, LOCALE, WEBMAIL
from ..sessions import require_account

APPROVALS: web.AppKey = web.AppKey("approvals", object)  # a delivery.approval.Approvals, or absent
NO_BADGE_PREFIXES = ("/static/", "/api/")  # requests that render no page: no count for the navigation
MAX_ID_DIGITS = 18
MAX_SHOWN = 256 * 1024  # bytes of a held message shown on its page
MAX_REASON = 1000


def _approvals(request: web.Request):
    found = request.app.get(APPROVALS)
    if found is None:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found"))
    return found


def _id(request: web.Request) -> int:
    text = request.match_info.get("id", "")
    if not text.isdigit() or len(text) > MAX_ID_DIGITS:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found"))
    return int(text)


async def page(request: web.Request) -> web.Response:
    """GET /approvals: the held messages waiting for a decision."""
    account = require_account(request)
    approvals = _approvals(request)
    if not await approvals.is_approver(account):
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found"))
    return request.app[WEBMAIL].render(request, "approvals.html", held=await approvals.pending(account),
                                       done=request.query.get("done", ""))


async def view(request: web.Request) -> web.Response:
    """GET /approvals/{id}: one held message as text, with the approve and reject forms."""
    account = require_account(request)
    try:
        held, data = await _approvals(request).view(_id(request), account)
    except NotFound:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found")) from None
    text = data[:MAX_SHOWN].decode("utf-8", "replace")
    return request.app[WEBMAIL].render(request, "approvals_view.html", held=held, text=text,
                                       cut=len(data) > MAX_SHOWN)


async def decide(request: web.Request) -> web.Response:
    """POST /approvals/{id}/approve or /reject (reason): decided once; 409 when decided already."""
    account = require_account(request)
    held_id, approvals = _id(request), _approvals(request)
    form = await request.post()
    reason = " ".join(str(form.get("reason", "")).split())[:MAX_REASON]
    _ = i18n.translator(request[LOCALE])
    try:
        if request.match_info["decision"] == "approve":
            await approvals.approve(held_id, account)
        elif reason:
            await approvals.reject(held_id, account, reason)
        else:
            raise web.HTTPBadRequest(text=_("apv_reason_needed"))
    except NotFound:
        raise web.HTTPNotFound(text=_("not_found")) from None
    except InvalidInput:
        raise web.HTTPConflict(text=_("apv_decided")) from None
    raise web.HTTPSeeOther(f"/approvals?done={request.match_info['decision']}")


def labels(request: web.Request):
    """The configured labels for the compose form's select, or None when labels are not enforced."""
    found = request.app.get(APPROVALS)
    return found.submitter.labels if found is not None else None


def with_label(request: web.Request, chosen: object, message: bytes) -> bytes:
    """The composed message with the label the sender chose (submit() stamps it: one header, a banner)."""
    known = labels(request)
    label = known.find(chosen) if known is not None and isinstance(chosen, str) else None
    return f"{HEADER}: {label.zh}\r\n".encode("utf-8") + message if label is not None else message


@web.middleware
async def badge_middleware(request: web.Request, handler):
    """The navigation's link to /approvals and its count, for approvers' page views (one COUNT; directory cached)."""
    found = request.app.get(APPROVALS)
    account = request.get(ACCOUNT)
    if found is not None and account is not None and request.method == "GET" \
            and not request.path.startswith(NO_BADGE_PREFIXES):
        badge = await found.badge(account)
        if badge is not None:
            request[APPROVALS_BADGE] = badge
    return await handler(request)
