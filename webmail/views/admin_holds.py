"""The admin console's legal holds and retention page (role admin only): list, place and lift holds, set and remove policies.

Department admins get 403, as users do: a hold or a policy reaches every department's mail
(a saved-search hold spans all accounts), so these are the installation's administrators'.
Every change goes through mailboxes.holdops, the path of `postroom hold/retention`, which
audits it; the forms are POSTed with the CSRF token and redirect back (303) with what was done.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from mailboxes import holdops, retention
from mailboxes.errors import InvalidInput, NotFound
from mailboxes.holds import CRITERIA, LegalHold

from .. import i18n
from ..context import LOCALE, WEBMAIL
from .admin_queue import _admin

MAX_FIELD_CHARS = 320  # an address, a department code, a criterion or a name from a form
MAX_ID_DIGITS = 12


def _text(form, name: str) -> str:
    v = form.get(name, "")
    return v.strip()[:holdops.MAX_REASON + 1] if isinstance(v, str) else ""


async def _scope(mb, h: LegalHold) -> dict:
    """What a hold covers, for the page: account address, department code, criteria."""
    address = ""
    if h.account_id is not None:
        try:
            address = (await mb.directory.account_by_id(h.account_id)).address
        except NotFound:
            address = f"#{h.account_id}"
    return {"account": address, "department": h.department_code or "", "criteria": h.criteria}


async def page(request: web.Request, *, error: str = "", form=None, status: int = 200) -> web.Response:
    """GET /admin/holds: every hold (lifted ones too), the retention policies, and the forms."""
    _admin(request)
    wm = request.app[WEBMAIL]
    mb = wm.mailboxes
    holds = await mb.store.holds.list(include_released=True)
    holds.sort(key=lambda h: (h.released_at is not None, -h.id))  # active first, newest first
    scopes = {h.id: await _scope(mb, h) for h in holds}
    _ = i18n.translator(request[LOCALE])
    done = request.query.get("done", "")
    return wm.render(
        request, "admin_holds.html", status=status, error=None, saved=False, holds=holds, scopes=scopes,
        policies=await retention.list_policies(mb.router.central), kinds=retention.KINDS, thens=retention.ACTIONS,
        departments=await mb.directory.list_departments(), form=form or {}, problem=error,
        notice=_("hold_done_" + done, id=request.query.get("id", "")) if done in DONE else "")


DONE = ("placed", "lifted", "set", "removed")


def _done(what: str, **extra) -> web.HTTPSeeOther:
    return web.HTTPSeeOther("/admin/holds?" + urlencode({"done": what, **extra}))


async def place(request: web.Request) -> web.Response:
    """POST /admin/holds (name, reason, account, department, from, subject, text, since, before)."""
    acct = _admin(request)
    form = await request.post()
    values = {k: _text(form, k)[:MAX_FIELD_CHARS] for k in ("name", "account", "department", *CRITERIA)}
    values["reason"] = _text(form, "reason")
    if not values["reason"]:
        return await page(request, error=i18n.translator(request[LOCALE])("hold_reason_needed"), form=values,
                          status=400)
    try:
        h = await holdops.place_hold(request.app[WEBMAIL].mailboxes, acct.address, values["name"],
                                     account=values["account"] or None, department=values["department"] or None,
                                     criteria={k: values[k] for k in CRITERIA if values[k]}, reason=values["reason"],
                                     via="web")
    except (InvalidInput, NotFound) as e:
        return await page(request, error=str(e), form=values, status=400)
    raise _done("placed", id=h.id)


async def lift(request: web.Request) -> web.Response:
    """POST /admin/holds/{id}/lift (reason)."""
    acct = _admin(request)
    hid = request.match_info["id"]
    if not hid.isdigit() or len(hid) > MAX_ID_DIGITS:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found"), content_type="text/plain")
    form = await request.post()
    reason = _text(form, "reason")
    if not reason:
        return await page(request, error=i18n.translator(request[LOCALE])("hold_reason_needed"), status=400)
    try:
        h = await holdops.lift_hold(request.app[WEBMAIL].mailboxes, acct.address, int(hid), reason=reason, via="web")
    except NotFound:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found"), content_type="text/plain") from None
    except InvalidInput as e:  # lifted already
        return await page(request, error=str(e), status=409)
    raise _done("lifted", id=h.id)


async def retention_set(request: web.Request) -> web.Response:
    """POST /admin/retention (kind, days, then, department)."""
    acct = _admin(request)
    form = await request.post()
    days = _text(form, "days")
    try:
        if not days.isdigit() or len(days) > 6:
            raise InvalidInput(f"days must be 1 to {retention.MAX_DAYS}")
        await holdops.set_retention(request.app[WEBMAIL].mailboxes, acct.address, _text(form, "kind"), int(days),
                                    _text(form, "then") or "delete", department=_text(form, "department")[:64],
                                    via="web")
    except (InvalidInput, NotFound) as e:
        return await page(request, error=str(e), status=400)
    raise _done("set")


async def retention_remove(request: web.Request) -> web.Response:
    """POST /admin/retention/remove (kind, department)."""
    acct = _admin(request)
    form = await request.post()
    try:
        await holdops.remove_retention(request.app[WEBMAIL].mailboxes, acct.address, _text(form, "kind")[:64],
                                       department=_text(form, "department")[:64], via="web")
    except NotFound:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found"), content_type="text/plain") from None
    raise _done("removed")


ROUTES = (
    ("GET", "/admin/holds", page),
    ("POST", "/admin/holds", place),
    ("POST", "/admin/holds/{id}/lift", lift),
    ("POST", "/admin/retention", retention_set),
    ("POST", "/admin/retention/remove", retention_remove),
)
