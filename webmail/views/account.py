"""Self-service account pages: change password, app passwords (create, list with last use, revoke), set up a mail client.

Implementation notes
- A password change needs the current password (the account's own, never an app password;
  throttled like a sign-in), ends every web session of the account and starts a new one
  for this browser. Mail clients holding the old password are refused at their next login
  (the credential cache checks the stored hash).
- A new app password is shown once, in the answer to the POST that made it; the list
  shows labels and last use only. A revoke names an id from the form: the directory
  deletes it only when it is this account's, else 404.
"""

from __future__ import annotations

import math

from aiohttp import web

from mailboxes.errors import NotFound

from .. import autoconfig, i18n
from ..context import LOCALE, WEBMAIL, SignInRefused
from ..sessions import require_account
from . import auth as auth_views
from .twofactor import password_ok

MIN_PASSWORD_CHARS = 10  # NIST SP 800-63B §5.1.1.2 asks for at least 8; we ask a little more
MAX_LABEL_CHARS = 128  # app_passwords.label's width
MAX_ID_CHARS = 18


async def password_form(request: web.Request) -> web.Response:
    require_account(request)
    done = request.query.get("done") == "1"
    return request.app[WEBMAIL].render(request, "account_password.html", error=None, done=done)


async def password_change(request: web.Request) -> web.Response:
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    form = await request.post()
    current = str(form.get("current", ""))[:auth_views.MAX_PASSWORD_CHARS]
    new = str(form.get("new", ""))
    again = str(form.get("again", ""))
    error = None
    if len(new) < MIN_PASSWORD_CHARS:
        error = _("pw_too_short", count=MIN_PASSWORD_CHARS)
    elif len(new) > auth_views.MAX_PASSWORD_CHARS:
        error = _("pw_too_long", count=auth_views.MAX_PASSWORD_CHARS)
    elif new != again:
        error = _("pw_mismatch")
    else:
        try:
            if not await password_ok(wm, acct, current, request.remote):
                error = _("pw_current_wrong")
        except SignInRefused as exc:
            error = _("sign_in_throttled", seconds=math.ceil(exc.retry_after or 1))
    if error is not None:
        return wm.render(request, "account_password.html", status=400, error=error, done=False)
    await wm.mailboxes.directory.set_password(acct.address, new)
    await wm.mailboxes.directory.audit(acct.address, "password.change", acct.address)
    await wm.sessions.end_all(acct.id)  # every other browser is signed out; this one gets a new session
    await wm.selfservice.factors.end_challenges(acct.id)  # half sign-ins made with the old password too
    raise await auth_views.start_session(request, acct, to="/settings/password?done=1")


async def app_passwords(request: web.Request, *, created: tuple[str, str] | None = None,
                        status: int = 200, error: str | None = None) -> web.Response:
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    rows = await wm.mailboxes.directory.list_app_passwords(acct.address)
    return wm.render(request, "account_app_passwords.html", status=status, rows=rows, created=created,
                     error=error)


async def app_password_create(request: web.Request) -> web.Response:
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    label = " ".join(str((await request.post()).get("label", "")).split())
    if not label or len(label) > MAX_LABEL_CHARS or not label.isprintable():
        return await app_passwords(request, status=400, error=_("ap_label_bad", count=MAX_LABEL_CHARS))
    secret = await wm.mailboxes.directory.add_app_password(acct.address, label)
    await wm.mailboxes.directory.audit(acct.address, "app_password.create", acct.address, label=label)
    return await app_passwords(request, created=(label, secret))


async def app_password_revoke(request: web.Request) -> web.Response:
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    raw = str((await request.post()).get("id", ""))
    if not raw.isascii() or not raw.isdigit() or len(raw) > MAX_ID_CHARS:
        raise NotFound("no such app password")
    await wm.mailboxes.directory.revoke_app_password(acct.address, int(raw))  # NotFound: another's -> 404
    await wm.mailboxes.directory.audit(acct.address, "app_password.revoke", acct.address, id=int(raw))
    raise web.HTTPSeeOther("/settings/app-passwords")


async def mail_client(request: web.Request) -> web.Response:
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    two_factor = await wm.selfservice.factors.enrolled(acct.id)
    return wm.render(request, "account_mail_client.html", listeners=wm.selfservice.listeners,
                     two_factor=two_factor)


async def mobileconfig(request: web.Request) -> web.Response:
    """An unsigned Apple configuration profile for the signed-in account (the device warns it is unsigned)."""
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    listeners = wm.selfservice.listeners
    body = autoconfig.mobileconfig(listeners, acct.address, display_name=acct.display_name or acct.address,
                                   description=f"{acct.address} ({listeners.hostname})")
    return web.Response(body=body, content_type="application/x-apple-aspen-config", headers={
        "Content-Disposition": 'attachment; filename="postroom.mobileconfig"', "Cache-Control": "no-store"})
