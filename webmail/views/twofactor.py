"""The TOTP second factor (RFC 6238): the code step of sign-in, enrolment with a QR code, recovery codes, and turning it off.

Implementation notes
- Sign-in with a second factor is two requests: the password (views/auth.py) makes a
  pending sign-in (a row keyed by the hash of a random token in its own cookie, valid for
  CHALLENGE_LIFETIME), and the code then starts the session. Nothing before the code is a
  session: no page is reachable with the password alone.
- Code guesses go through the server's login throttle (SelfService.check_code).
- The QR code is an SVG made here (segno) and served from our own origin, so the strict CSP
  (img-src 'self', no inline script or style) holds.
"""

from __future__ import annotations

import io
import math
from datetime import timedelta

import segno
from aiohttp import web

from mailboxes.errors import AlreadyExists
from mailboxes.secondfactor import MAX_CODE_CHARS, looks_like_code, provisioning_uri

from .. import i18n, security
from ..context import LOCALE, WEBMAIL, SignInRefused
from ..sessions import require_account
from . import auth as auth_views

PENDING_COOKIE = "postroom-2fa"
CHALLENGE_LIFETIME = timedelta(minutes=5)
QR_SCALE = 4  # pixels per module of the SVG


async def ask_for_code(request: web.Request, acct) -> web.HTTPSeeOther:
    """After the right password: a pending sign-in and the redirect to the code form."""
    wm = request.app[WEBMAIL]
    token = await wm.selfservice.factors.challenge(acct.id, lifetime=CHALLENGE_LIFETIME)
    response = web.HTTPSeeOther("/login/code")
    security.set_cookie(response, request, PENDING_COOKIE, token, samesite="Strict",
                        max_age=int(CHALLENGE_LIFETIME.total_seconds()))
    return response


async def _pending(request: web.Request):
    wm = request.app[WEBMAIL]
    token = request.cookies.get(security.cookie_name(request, PENDING_COOKIE), "")
    account_id = await wm.selfservice.factors.challenged(token)
    return token, account_id


async def code_form(request: web.Request) -> web.Response:
    _token, account_id = await _pending(request)
    if account_id is None:
        raise web.HTTPSeeOther("/login")
    return request.app[WEBMAIL].render(request, "twofactor_code.html", error=None)


async def code_submit(request: web.Request) -> web.Response:
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    token, account_id = await _pending(request)
    if account_id is None:
        raise web.HTTPSeeOther("/login")
    code = str((await request.post()).get("code", ""))[:MAX_CODE_CHARS]
    acct = await wm.mailboxes.directory.account_by_id(account_id)
    if not acct.enabled:
        raise web.HTTPSeeOther("/login")
    try:
        ok = await wm.selfservice.check_code(acct, code, request.remote)
    except SignInRefused as exc:
        return wm.render(request, "twofactor_code.html", status=429,
                         error=_("sign_in_throttled", seconds=math.ceil(exc.retry_after or 1)))
    if not ok:
        return wm.render(request, "twofactor_code.html", status=401, error=_("tf_code_wrong"))
    await wm.selfservice.factors.end_challenge(token)
    response = await auth_views.start_session(request, acct)
    security.delete_cookie(response, request, PENDING_COOKIE)
    raise response


# --- settings ------------------------------------------------------------------------------

async def settings(request: web.Request) -> web.Response:
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    factors = wm.selfservice.factors
    state = await factors.state(acct.id)
    left = await factors.recovery_codes_left(acct.id) if state is not None and state.confirmed else 0
    return wm.render(request, "twofactor.html", state=state, left=left, codes=None, error=None,
                     secret_groups=_groups(state.secret) if state is not None else "")


def _groups(secret: str) -> str:
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


async def begin(request: web.Request) -> web.Response:
    acct = require_account(request)
    try:
        await request.app[WEBMAIL].selfservice.factors.begin(acct.id)
    except AlreadyExists:
        pass  # already in force: the page says so
    raise web.HTTPSeeOther("/settings/two-factor")


async def qr_code(request: web.Request) -> web.Response:
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    state = await wm.selfservice.factors.state(acct.id)
    if state is None or state.confirmed:  # the secret is shown only while enrolment is pending
        raise web.HTTPNotFound()
    uri = provisioning_uri(state.secret, acct.address, wm.selfservice.listeners.hostname)
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=QR_SCALE, title=acct.address)
    return web.Response(body=out.getvalue(), content_type="image/svg+xml",
                        headers={"Cache-Control": "no-store"})


async def confirm(request: web.Request) -> web.Response:
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    code = str((await request.post()).get("code", ""))[:MAX_CODE_CHARS]
    factors = wm.selfservice.factors
    codes = await factors.confirm(acct.id, code)
    state = await factors.state(acct.id)
    if codes is None:
        return wm.render(request, "twofactor.html", status=400, state=state, left=0, codes=None,
                         error=_("tf_code_wrong"), secret_groups=_groups(state.secret) if state else "")
    await wm.mailboxes.directory.audit(acct.address, "second_factor.on", acct.address)
    return wm.render(request, "twofactor.html", state=state, left=len(codes), codes=codes, error=None,
                     secret_groups="")


async def new_recovery_codes(request: web.Request) -> web.Response:
    """A fresh set of recovery codes (the old ones stop working); needs a current code."""
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    code = str((await request.post()).get("code", ""))[:MAX_CODE_CHARS]
    factors = wm.selfservice.factors
    error = _("tf_code_wrong")
    try:
        ok = await factors.enrolled(acct.id) and await wm.selfservice.check_code(acct, code, request.remote)
    except SignInRefused as exc:
        ok, error = False, _("sign_in_throttled", seconds=math.ceil(exc.retry_after or 1))
    state = await factors.state(acct.id)
    if not ok:
        return wm.render(request, "twofactor.html", status=403, state=state,
                         left=await factors.recovery_codes_left(acct.id), codes=None, error=error, secret_groups="")
    codes = await factors.new_recovery_codes(acct.id)
    await wm.mailboxes.directory.audit(acct.address, "second_factor.recovery_codes", acct.address)
    return wm.render(request, "twofactor.html", state=state, left=len(codes), codes=codes, error=None,
                     secret_groups="")


async def disable(request: web.Request) -> web.Response:
    """Turning the second factor off needs a current code (or recovery code) or the account's password."""
    acct = require_account(request)
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    proof = str((await request.post()).get("proof", ""))[:auth_views.MAX_PASSWORD_CHARS]
    factors = wm.selfservice.factors
    ok = False
    try:
        if proof and await factors.enrolled(acct.id):
            if looks_like_code(proof):
                ok = await wm.selfservice.check_code(acct, proof, request.remote)
            else:
                ok = await password_ok(wm, acct, proof, request.remote)
    except SignInRefused as exc:
        error = _("sign_in_throttled", seconds=math.ceil(exc.retry_after or 1))
    else:
        error = _("tf_disable_refused")
    if not ok:
        state = await factors.state(acct.id)
        left = await factors.recovery_codes_left(acct.id)
        return wm.render(request, "twofactor.html", status=403, state=state, left=left, codes=None,
                         error=error, secret_groups="")
    await factors.disable(acct.id)
    await wm.mailboxes.directory.audit(acct.address, "second_factor.off", acct.address)
    raise web.HTTPSeeOther("/settings/two-factor")


async def password_ok(wm, acct, password: str, ip: str | None) -> bool:
    """The account's own password (never an app password), throttled; SignInRefused(retry) when throttled."""
    if wm.selfservice.reauth is None:
        return False
    try:
        await wm.selfservice.reauth(acct.address, password, ip)
    except SignInRefused as exc:
        if exc.retry_after is not None:
            raise
        return False
    return True
