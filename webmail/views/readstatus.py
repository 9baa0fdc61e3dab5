"""Read status for the sender: the per-recipient table under a Sent message, its JSON, and recall.

A sent message is named by its read-status id; the store answers only when the
signed-in account is its sender (NotFound otherwise: 404, as for an id that does
not exist), so changing the id in a URL shows nobody else's status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from mailboxes.errors import NotFound
from mailboxes.model import Account
from mailboxes.readstatus import AlreadyRead, SentStatus

from .. import i18n
from ..context import LOCALE, WEBMAIL
from ..sessions import require_account

MAX_ID_DIGITS = 18  # a sent-message id in a URL (ids are 63-bit)
NOTICES = {"done": "rs_recall_done", "refused": "rs_recall_refused", "read_meanwhile": "rs_recall_read_meanwhile"}


def _sent_id(request: web.Request) -> int:
    text = request.match_info.get("id", "")
    if not text.isdigit() or len(text) > MAX_ID_DIGITS:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found"))
    return int(text)


async def _status(request: web.Request, account: Account, sent_id: int) -> SentStatus:
    try:
        return await request.app[WEBMAIL].mailboxes.store.readstatus.status(account, sent_id)
    except NotFound:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found")) from None


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d is not None else None


def as_json(st: SentStatus) -> dict[str, Any]:
    return {"id": st.id, "message_id": st.message_id, "subject": st.subject, "sent_at": _iso(st.sent_at),
            "recalled_at": _iso(st.recalled_at), "recallable": st.recallable,
            "recipients": [{"address": c.address, "delivered_at": _iso(c.delivered_at),
                            "first_read_at": _iso(c.first_read_at), "read": c.first_read_at is not None,
                            "recalled_at": _iso(c.recalled_at)} for c in st.copies]}


async def panel(request: web.Request, account: Account, folder_use: str | None,
                message_id: str | None) -> dict[str, Any] | None:
    """What message.html shows under a message in the sender's Sent folder (None elsewhere or untracked)."""
    if folder_use != "\\Sent":
        return None
    rs = request.app[WEBMAIL].mailboxes.store.readstatus
    sent_id = await rs.find(account, message_id)
    if sent_id is None:
        return None
    notice = NOTICES.get(request.query.get("recall", ""))
    return {"status": await rs.status(account, sent_id), "notice": notice,
            "folder": request.query.get("folder", ""), "uid": request.query.get("uid", "")}


async def status_json(request: web.Request) -> web.Response:
    """GET /readstatus/{id}: the sender's view as JSON."""
    account = require_account(request)
    return web.json_response(as_json(await _status(request, account, _sent_id(request))))


async def recall(request: web.Request) -> web.Response:
    """POST /readstatus/{id}/recall: remove every colleague's copy if nobody has read it (else 409, nothing removed)."""
    account = require_account(request)
    sent_id = _sent_id(request)
    await _status(request, account, sent_id)  # 404 for anyone but the sender
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    wants_json = "application/json" in request.headers.get("Accept", "")
    form = await request.post() if request.content_type != "application/json" else {}
    try:
        out = await wm.mailboxes.store.readstatus.recall(wm.mailboxes.store, account, sent_id)
        outcome = "read_meanwhile" if out.read_meanwhile else "done"
        body = {"recalled": True, "removed": out.removed, "read_meanwhile": list(out.read_meanwhile)}
        status = 200
    except AlreadyRead as exc:
        outcome = "refused"
        body = {"recalled": False, "read_by": list(exc.addresses)}
        status = 409
    if wants_json:
        body["message"] = _(NOTICES[outcome])
        return web.json_response(body, status=status)
    folder, uid = str(form.get("folder", "")), str(form.get("uid", ""))
    raise web.HTTPSeeOther("/message?" + urlencode({"folder": folder, "uid": uid, "recall": outcome}))
