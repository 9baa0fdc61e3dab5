"""Sign-in, sign-out (here and everywhere) and the language switch."""

from __future__ import annotations

import math

from aiohttp import web

from .. import i18n, security
from ..context import ACCOUNT, LOCALE, SESSION, SignInRefused, WEBMAIL
from ..sessions import SESSION_COOKIE
from . import twofactor as twofactor_views

MAX_ADDRESS_CHARS = 320  # RFC 5321 §4.5.3.1 path limit, generously
MAX_PASSWORD_CHARS = 1024
LANG_COOKIE_SECONDS = 365 * 24 * 3600


async def login_form(request: web.Request) -> web.Response:
    if request.get(ACCOUNT) is not None:
        raise web.HTTPSeeOther("/mail")
    return request.app[WEBMAIL].render(request, "login.html", error=None, address="")


async def login_submit(request: web.Request) -> web.Response:
    wm = request.app[WEBMAIL]
    form = await request.post()
    address = str(form.get("address", ""))[:MAX_ADDRESS_CHARS].strip()
    password = str(form.get("password", ""))[:MAX_PASSWORD_CHARS]
    _ = i18n.translator(request[LOCALE])
    try:
        acct = await wm.login(address, password, request.remote)
    except SignInRefused as exc:
        if exc.retry_after is not None:
            return wm.render(request, "login.html", status=429, address=address,
                             error=_("sign_in_throttled", seconds=math.ceil(exc.retry_after)))
        return wm.render(request, "login.html", status=401, address=address, error=_("sign_in_failed"))
    if await wm.selfservice.factors.enrolled(acct.id):
        raise await twofactor_views.ask_for_code(request, acct)  # the session starts after the code
    raise await start_session(request, acct)


async def start_session(request: web.Request, acct, *, to: str = "/mail") -> web.HTTPSeeOther:
    """A new session for `acct` in this browser (ending the one it had) and the redirect to `to`."""
    wm = request.app[WEBMAIL]
    old = request.get(SESSION)
    if old is not None:  # a new secret at every sign-in: no session fixation
        await wm.sessions.end(old.id)
    token, _sess = await wm.sessions.create(acct.id, lifetime=wm.session_idle,
                                            user_agent=request.headers.get("User-Agent", ""))
    await wm.sessions.purge_expired()  # sign-ins sweep what has expired (one indexed DELETE)
    response = web.HTTPSeeOther(to)
    security.set_cookie(response, request, SESSION_COOKIE, token)
    return response


async def logout(request: web.Request) -> web.Response:
    sess = request.get(SESSION)
    if sess is not None:
        await request.app[WEBMAIL].sessions.end(sess.id)
    raise _signed_out(request)


async def logout_everywhere(request: web.Request) -> web.Response:
    acct = request.get(ACCOUNT)
    if acct is not None:
        await request.app[WEBMAIL].sessions.end_all(acct.id)
    raise _signed_out(request)


def _signed_out(request: web.Request) -> web.HTTPSeeOther:
    response = web.HTTPSeeOther("/login")
    security.delete_cookie(response, request, SESSION_COOKIE)
    return response


async def set_language(request: web.Request) -> web.Response:
    form = await request.post()
    lang = str(form.get("lang", ""))
    back = str(form.get("back", ""))
    # Only a path on this site (never "//host" or a scheme): no open redirect.
    if (not back.startswith("/") or back.startswith("//") or "\\" in back or not back.isascii()
            or not back.isprintable() or " " in back):
        back = "/"
    response = web.HTTPSeeOther(back)
    if lang in i18n.LOCALES:
        response.set_cookie(security.cookie_name(request, i18n.LANG_COOKIE), lang, max_age=LANG_COOKIE_SECONDS,
                            path="/", httponly=True, secure=request.secure, samesite="Lax")
    raise response
