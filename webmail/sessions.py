"""Who is signed in (the session cookie against the database), the locale, and the one CSRF check for every state-changing request.

Implementation notes
- The session cookie holds the session's secret; the database holds its hash
  (mailboxes.websessions). Each request looks it up and checks that the account still
  exists and is enabled; a disabled account's sessions stop working at once.
- Activity moves the expiry forward, written at most once per TOUCH_EVERY per session.
- Sign-in always makes a new session and ends the one the browser had (no session
  fixation: a secret planted before sign-in never becomes a signed-in session).
"""

from __future__ import annotations

from aiohttp import web

from mailboxes.errors import InvalidInput, NotFound, OverQuota, PermissionDenied, ReadOnly, StoreError, UnderHold

from . import i18n, security
from .context import ACCOUNT, CSRF, LOCALE, SESSION, SESSION_TOKEN, TOUCH_EVERY, WEBMAIL

SESSION_COOKIE = "postroom-session"
PRE_COOKIE = "postroom-pre"  # the CSRF token before sign-in (double-submit)


@web.middleware
async def session_middleware(request: web.Request, handler):
    wm = request.app[WEBMAIL]
    request[LOCALE] = i18n.negotiate(request.cookies.get(security.cookie_name(request, i18n.LANG_COOKIE)),
                                       request.headers.get("Accept-Language"))
    token = request.cookies.get(security.cookie_name(request, SESSION_COOKIE))
    if token:
        sess = await wm.sessions.find(token)
        if sess is not None:
            try:
                acct = await wm.mailboxes.directory.account_by_id(sess.account_id)
            except NotFound:
                acct = None
            if acct is not None and acct.enabled:
                if wm.clock() - sess.last_seen_at >= TOUCH_EVERY:
                    sess = await wm.sessions.touch(sess, idle=wm.session_idle, max_age=wm.session_max_age)
                request[SESSION], request[ACCOUNT], request[SESSION_TOKEN] = sess, acct, token
    return await handler(request)


# The store's typed errors as HTTP statuses, in this one place (style.md rule 5).
STORE_ERRORS: tuple[tuple[type[StoreError], type[web.HTTPException], str], ...] = (
    (NotFound, web.HTTPNotFound, "not_found"),
    (InvalidInput, web.HTTPBadRequest, "not_found"),
    (OverQuota, web.HTTPInsufficientStorage, "error"),
    (PermissionDenied, web.HTTPForbidden, "forbidden"),
    (ReadOnly, web.HTTPForbidden, "forbidden"),
    (UnderHold, web.HTTPConflict, "under_hold"),
    (StoreError, web.HTTPConflict, "error"),
)


@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except StoreError as exc:
        http, key = next((h, k) for cls, h, k in STORE_ERRORS if isinstance(exc, cls))
        raise http(text=i18n.translator(request.get(LOCALE, i18n.DEFAULT))(key), content_type="text/plain") from None


@web.middleware
async def csrf_middleware(request: web.Request, handler):
    """403 for a state-changing request without the token of this session (or of this browser before sign-in)."""
    new_pre = None
    if SESSION in request:
        expected = security.session_csrf(request[SESSION_TOKEN])
    else:
        expected = request.cookies.get(security.cookie_name(request, PRE_COOKIE))
        if not expected and request.method in security.SAFE_METHODS:
            expected = new_pre = security.new_pre_token()
    request[CSRF] = expected or ""
    if (request.method not in security.SAFE_METHODS and request.path not in security.CSRF_EXEMPT_PATHS
            and not request.path.startswith(security.CSRF_EXEMPT_PREFIX)):
        given = request.headers.get(security.CSRF_HEADER)
        if (given is None and request.path not in security.CSRF_HEADER_ONLY_PATHS
                and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")):
            given = (await request.post()).get(security.CSRF_FIELD)
        if not security.tokens_match(expected, given if isinstance(given, str) else None):
            raise web.HTTPForbidden(text=i18n.translator(request[LOCALE])("forbidden"), content_type="text/plain")
    response = await handler(request)
    if new_pre is not None:
        security.set_cookie(response, request, PRE_COOKIE, new_pre, samesite="Strict")
    return response


def require_account(request: web.Request):
    """The signed-in account, or a redirect to the sign-in page."""
    acct = request.get(ACCOUNT)
    if acct is None:
        raise web.HTTPSeeOther("/login")
    return acct
