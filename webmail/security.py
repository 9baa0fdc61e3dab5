"""HTTP security for every page: response headers (CSP, framing, sniffing, referrer), cookie names and flags, CSRF tokens.

Implementation notes
- Pages get a strict Content-Security-Policy (no inline script anywhere; scripts and styles
  only from our own origin) and may not be framed. The one exception is the frame that
  shows a mail's HTML: it sets its own, stricter policy (see views/message.py), which
  this middleware leaves in place.
- Over TLS cookies are Secure and carry the `__Host-` prefix (RFC 6265bis §4.1.3.2: the
  browser then refuses them unless Secure, Path=/ and without Domain, so a sibling host
  cannot plant one). Over plain HTTP (loopback, tests) the same cookies have plain names.
- CSRF (the synchronizer token pattern): a signed-in page carries a token derived from the
  session's secret (HMAC-SHA256), so it is bound to that session, changes with it and needs
  no storage; before sign-in a random token is kept in its own cookie (sign-in and the
  language switch are then double-submit). Every request that is not GET/HEAD/OPTIONS
  must carry the token in the form field `csrf` or the `X-CSRF-Token` header, else 403; a streamed
  upload (CSRF_HEADER_ONLY_PATHS) only in the header, so that its body is never read whole as a form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
PRE_TOKEN_BYTES = 32
# Outlook Autodiscover POSTs its question from a mail client (views/autoconfig.py, in the several
# spellings Outlook uses): it changes nothing and reads no session, so it carries no CSRF token.
AUTODISCOVER_PATHS = ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml",
                      "/AutoDiscover/AutoDiscover.xml", "/autodiscover/Autodiscover.xml")
CSRF_EXEMPT_PATHS = frozenset(AUTODISCOVER_PATHS) | {"/.well-known/carddav"}  # RFC 6764 §5 (PROPFIND)
# read-only CardDAV, HTTP Basic only; the JSON API, bearer tokens only (webmail/api.py): no cookie session to ride on
CSRF_EXEMPT_PREFIX = ("/carddav", "/api/v1/")
CSRF_HEADER_ONLY_PATHS = frozenset({"/compose/upload"})  # streamed bodies: never read whole to find a form field

PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; frame-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HSTS = "max-age=31536000"


def cookie_name(request: web.Request, base: str) -> str:
    return f"__Host-{base}" if request.secure else base


def set_cookie(response: web.StreamResponse, request: web.Request, base: str, value: str, *,
               max_age: int | None = None, samesite: str = "Lax") -> None:
    response.set_cookie(cookie_name(request, base), value, max_age=max_age, path="/", httponly=True,
                        secure=request.secure, samesite=samesite)


def delete_cookie(response: web.StreamResponse, request: web.Request, base: str) -> None:
    response.del_cookie(cookie_name(request, base), path="/", secure=request.secure, httponly=True,
                        samesite="Lax")


def session_csrf(session_token: str) -> str:
    """The CSRF token of a session: bound to its secret, useless without it, never the secret itself."""
    return hmac.new(session_token.encode("ascii"), b"postroom webmail csrf", hashlib.sha256).hexdigest()


def new_pre_token() -> str:
    return secrets.token_urlsafe(PRE_TOKEN_BYTES)


def tokens_match(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8", "replace"), given.encode("utf-8", "replace"))


@web.middleware
async def headers_middleware(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        add_headers(request, response)
        raise
    add_headers(request, response)
    return response


def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h.setdefault("Content-Security-Policy", PAGE_CSP)
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cache-Control", "no-store")
    if request.secure:
        h.setdefault("Strict-Transport-Security", HSTS)
