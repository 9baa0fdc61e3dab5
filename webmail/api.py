"""The JSON API under /api/v1/: bearer-token authentication only, RFC 9457 problem details, admin account reads.

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
from dataclasses import asdict

from aiohttp import web

from mailboxes.apitokens import ApiTokens
from mailboxes.errors import NotFound
from mailboxes.model import Account, Role
from mailboxes.service import Mailboxes

from . import api_queue  # operations routes (issue 10 points 7-8: queue, DKIM, dashboard)
from .context import _request_key

log = logging.getLogger("postroom.api")

MAX_BODY_BYTES = 64 * 1024  # every API request body; account operations are small JSON objects
MAX_PAGE = 200  # accounts per page at most
PROBLEM_TYPE = "application/problem+json"
MAILBOXES: web.AppKey[Mailboxes] = web.AppKey("mailboxes", Mailboxes)
TOKENS: web.AppKey[ApiTokens] = web.AppKey("tokens", ApiTokens)
ACTOR = _request_key("api_actor", Account)
BAD_TOKENS: web.AppKey[dict] = web.AppKey("bad_tokens", dict)
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
    """401 without a live bearer token; every HTTP error of the API as problem details."""
    if _throttled(request):
        return problem(429, "Too Many Requests", "too many refused tokens from this address; try later")
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    tok = await request.app[TOKENS].find(secret.strip()) if scheme.lower() == "bearer" else None
    if tok is None or tok.kind != "admin":
        _note_bad_token(request)
        return problem(401, "Unauthorized", "a valid bearer token is required")
    try:
        acct = await request.app[MAILBOXES].directory.account_by_id(tok.owner_id)
    except NotFound:
        return problem(401, "Unauthorized", "the token's owner no longer exists")
    if not acct.enabled:
        return problem(401, "Unauthorized", "the token's owner is disabled")
    request[ACTOR] = acct
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return problem(e.status, e.reason)


def _require_admin(request: web.Request) -> Account:
    acct: Account = request[ACTOR]
    if acct.role != Role.ADMIN:
        raise web.HTTPForbidden()
    return acct


def account_json(a: Account) -> dict:
    d = asdict(a)
    d["role"] = a.role.value
    return d


async def list_accounts(request: web.Request) -> web.Response:
    """GET /api/v1/accounts?q=&offset=&limit=: accounts by address, filtered by a substring of address or name."""
    _require_admin(request)
    try:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        return problem(400, "Bad Request", "offset and limit must be integers", field="offset")
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        return problem(400, "Bad Request", f"offset >= 0 and 1 <= limit <= {MAX_PAGE}", field="limit")
    q = request.query.get("q", "").lower()
    accts = await request.app[MAILBOXES].directory.list_accounts()
    if q:
        accts = [a for a in accts if q in a.address or q in a.display_name.lower()]
    page = accts[offset:offset + limit]
    return web.json_response({"total": len(accts), "offset": offset, "items": [account_json(a) for a in page]})


async def get_account(request: web.Request) -> web.Response:
    """GET /api/v1/accounts/{address}."""
    _require_admin(request)
    try:
        acct = await request.app[MAILBOXES].directory.account(request.match_info["address"])
    except NotFound:
        return problem(404, "Not Found", "no such account")
    return web.json_response(account_json(acct))


ROUTES = (
    ("GET", "/accounts", list_accounts),
    ("GET", "/accounts/{address}", get_account),
)


def make_api(mailboxes: Mailboxes, tokens: ApiTokens) -> web.Application:
    app = web.Application(middlewares=[bearer_middleware], client_max_size=MAX_BODY_BYTES)
    app[MAILBOXES] = mailboxes
    app[TOKENS] = tokens
    app[BAD_TOKENS] = {}
    for method, path, handler in ROUTES + api_queue.ROUTES:
        app.router.add_route(method, path, handler)
    return app
