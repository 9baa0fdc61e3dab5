"""The JSON API under /api/v1/: bearer-token authentication only, RFC 9457 problem details; the routes live in api_*.py modules.

Implementation notes
- A sub-application mounted at /api/v1/ with its own middleware: only `Authorization: Bearer`
  authenticates (the webmail's session cookie never does, so a cross-site request cannot reach
  the API with a browser's ambient credentials).
- Every error is `application/problem+json` (RFC 9457 section 3) with type, title, status, detail.
- Request bodies are capped at MAX_BODY_BYTES (aiohttp's client_max_size answers 413 above it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from mailboxes.apitokens import ApiToken, ApiTokens
from mailboxes.errors import NotFound
from mailboxes.model import Account, Role
from mailboxes.service import Mailboxes

from . import openapi
from .context import _request_key

log = logging.getLogger("postroom.api")

MAX_BODY_BYTES = 64 * 1024  # every API request body; account operations are small JSON objects
PROBLEM_TYPE = "application/problem+json"
MAILBOXES: web.AppKey[Mailboxes] = web.AppKey("mailboxes", Mailboxes)
TOKENS: web.AppKey[ApiTokens] = web.AppKey("tokens", ApiTokens)
ACTOR = _request_key("api_actor", Account)
SOURCE_TOKEN = _request_key("api_source_token", ApiToken)
# Routes other packages contribute (the composition root passes them in): (method, path, kind, handler), where
# kind "source" hands the handler the source's token and kind "person" the account an admin-kind token acts as.
ExtraRoute = tuple[str, str, str, Callable[..., Awaitable[web.StreamResponse]]]
TOKEN = _request_key("api_token", ApiToken)  # its department_id, when set, limits what the actor reaches
BAD_TOKENS: web.AppKey[dict] = web.AppKey("bad_tokens", dict)
OPENAPI: web.AppKey[bytes] = web.AppKey("openapi", bytes)
PUBLIC_PATHS = frozenset({"/api/v1/openapi.json"})  # answered without a token
MAX_BAD_TOKENS = 20  # refused bearer tokens per client address per window before 429
BAD_TOKEN_WINDOW = 300.0  # seconds
MAX_TRACKED_CLIENTS = 10_000  # addresses remembered at most (oldest forgotten first)


def _throttled(request: web.Request) -> bool:
    seen = request.app[BAD_TOKENS].get(request.remote or "")
    return seen is not None and seen[0] >= MAX_BAD_TOKENS and time.monotonic() - seen[1] < BAD_TOKEN_WINDOW


def _note_bad_token(request: web.Request) -> None:
    bad, ip, now = request.app[BAD_TOKENS], request.remote or "", time.monotonic()
    count, start = bad.pop(ip, (0, now))
    if now - start >= BAD_TOKEN_WINDOW:
        count, start = 0, now
    bad[ip] = (count + 1, start)
    while len(bad) > MAX_TRACKED_CLIENTS:
        del bad[next(iter(bad))]


def problem(status: int, title: str, detail: str = "", **extra) -> web.Response:
    """An RFC 9457 problem details response."""
    body = {"type": "about:blank", "title": title, "status": status, **({"detail": detail} if detail else {}), **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="postroom"'} if status == 401 else None
    return web.Response(status=status, text=json.dumps(body, ensure_ascii=False), content_type=PROBLEM_TYPE,
                        headers=headers)


@web.middleware
async def bearer_middleware(request: web.Request, handler):
    """401 without a live bearer token of the route's kind; every HTTP error of the API as problem details."""
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    if _throttled(request):
        return problem(429, "Too Many Requests", "too many refused tokens from this address; try later")
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    tok = await request.app[TOKENS].find(secret.strip()) if scheme.lower() == "bearer" else None
    kind = getattr(request.match_info.handler, "token_kind", "admin")  # "source": a workflow system's routes
    if tok is None or tok.kind != kind:
        _note_bad_token(request)
        await request.app[MAILBOXES].directory.audit_soon("-", "login.failed", "api", ip=request.remote or "")
        return problem(401, "Unauthorized", "a valid bearer token is required")
    if kind == "source":
        request[SOURCE_TOKEN] = tok
        return await _handled(request, handler)
    try:
        acct = await request.app[MAILBOXES].directory.account_by_id(tok.owner_id)
    except NotFound:
        return problem(401, "Unauthorized", "the token's owner no longer exists")
    if not acct.enabled:
        return problem(401, "Unauthorized", "the token's owner is disabled")
    request[ACTOR], request[TOKEN] = acct, tok
    return await _handled(request, handler)


async def _handled(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return problem(e.status, e.reason)


def _require_admin(request: web.Request) -> Account:
    """The acting account when it is a whole-server administrator (the operations routes); else 403."""
    acct: Account = request[ACTOR]
    if acct.role != Role.ADMIN:
        raise web.HTTPForbidden()
    return acct


async def openapi_document(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json: the document assembled from webmail/openapi/*.yaml at start-up."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json", charset="utf-8")


ROUTES = (("GET", "/openapi.json", openapi_document),)  # each feature's routes come from its api_*.py module


def _bound(kind: str, handler: Callable[..., Awaitable[web.StreamResponse]]):
    async def route(request: web.Request) -> web.StreamResponse:
        return await handler(request, request[SOURCE_TOKEN] if kind == "source" else request[ACTOR])
    route.token_kind = "source" if kind == "source" else "admin"  # type: ignore[attr-defined]
    return route


def make_api(mailboxes: Mailboxes, tokens: ApiTokens, extra: tuple[ExtraRoute, ...] = ()) -> web.Application:
    app = web.Application(middlewares=[bearer_middleware], client_max_size=MAX_BODY_BYTES)
    app[MAILBOXES] = mailboxes
    app[TOKENS] = tokens
    app[BAD_TOKENS] = {}
    app[OPENAPI] = openapi.served()
    # directory (accounts, departments, groups, aliases); operations (queue, DKIM, dashboard)
    for method, path, handler in (*ROUTES, *api_people.ROUTES, *api_queue.ROUTES, *api_audit.ROUTES):
        app.router.add_route(method, path, handler)
    for method, path, kind, bound in extra:
        app.router.add_route(method, path, _bound(kind, bound))
    return app


# The feature modules import this one's keys and `problem`, so they are imported after it is defined
# (at import time, never on the serving loop). One line per module.
from . import api_people  # noqa: E402  (directory: accounts, departments, groups, aliases)
from . import api_queue  # noqa: E402  (operations: queue, DKIM, dashboard; issue 10 points 7-8)
from . import api_audit  # noqa: E402  (the audit log; issue 13 point 3)
