"""The admin console's workflow sources page (role admin only): sources and their tokens, webhook endpoints.

A source is a workflow system that posts events (POST /api/v1/events, issue 11) with a bearer
token. Here an administrator adds one (its first token is shown once, in the answer to that
POST, never again: only its SHA-256 is kept), gives it another token (rotation), revokes one
token or the whole source, and sets or removes the URL its signed callbacks go to (a generated
webhook secret is shown once the same way). Department admins and users get 403: a source
notifies anyone in the installation. Every change goes through mailboxes.sourceops, the path of
`postroom source/webhook`, which audits it (never a secret); forms carry the CSRF token, and
changes that show nothing new redirect back (303) with what was done.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from mailboxes import sourceops
from mailboxes.errors import AlreadyExists, InvalidInput, NotFound
from mailboxes.events import MAX_SOURCE_NAME
from mailboxes.webhookendpoints import MAX_URL, SOURCE_NAME

from .. import i18n
from ..context import LOCALE, WEBMAIL
from .admin_queue import _admin

PLAIN_HTTP = web.AppKey("webhooks_plain_http", bool)  # [webhooks] allow_plain_http, for the URL policy
MAX_ID_DIGITS = 12
DONE = ("revoked", "token_revoked", "webhook_set", "webhook_removed")


def _field(form, name: str, limit: int) -> str:
    v = form.get(name, "")
    return v.strip()[:limit + 1] if isinstance(v, str) else ""


async def page(request: web.Request, *, problem: str = "", status: int = 200, created: dict | None = None,
               form: dict | None = None) -> web.Response:
    """GET /admin/sources: every source with its live tokens and webhook, every webhook endpoint, the forms.

    `created`: a secret made by this request, shown once ({"kind": "token"|"webhook", "name", "secret", "id"}).
    """
    _admin(request)
    wm = request.app[WEBMAIL]
    sources, endpoints = await sourceops.overview(wm.mailboxes)
    _ = i18n.translator(request[LOCALE])
    done, name, tid = (request.query.get(k, "") for k in ("done", "name", "id"))
    shown = done in DONE and SOURCE_NAME.fullmatch(name) and (not tid or tid.isdigit() and len(tid) <= MAX_ID_DIGITS)
    notice = _("src_done_" + done, name=name, id=tid) if shown else ""  # only what a redirect of ours could say
    return wm.render(request, "admin_sources.html", status=status, error=None, saved=False, sources=sources,
                     endpoints=endpoints, created=created, problem=problem, notice=notice, form=form or {},
                     max_name=MAX_SOURCE_NAME, max_url=MAX_URL,
                     when=lambda d: d.strftime("%Y-%m-%d %H:%M") if d is not None else "")


def _done(what: str, **extra) -> web.HTTPSeeOther:
    return web.HTTPSeeOther("/admin/sources?" + urlencode({"done": what, **extra}))


async def add(request: web.Request) -> web.Response:
    """POST /admin/sources (name): a new source; its first token shown once in this answer."""
    acct = _admin(request)
    name = _field(await request.post(), "name", MAX_SOURCE_NAME)
    _ = i18n.translator(request[LOCALE])
    try:
        src, secret, tok = await sourceops.add_source(request.app[WEBMAIL].mailboxes, acct.address, name, via="web")
    except InvalidInput:
        return await page(request, problem=_("src_bad_name", n=MAX_SOURCE_NAME), status=400, form={"name": name})
    except AlreadyExists:
        return await page(request, problem=_("src_exists", name=name.lower()), status=409, form={"name": name})
    return await page(request, created={"kind": "token", "name": src.name, "secret": secret, "id": tok.id})


async def token(request: web.Request) -> web.Response:
    """POST /admin/sources/token (name): another token for an active source, shown once in this answer."""
    acct = _admin(request)
    name = _field(await request.post(), "name", MAX_SOURCE_NAME)
    try:
        src, secret, tok = await sourceops.new_token(request.app[WEBMAIL].mailboxes, acct.address, name, via="web")
    except InvalidInput:  # revoked
        return await page(request, problem=i18n.translator(request[LOCALE])("src_revoked_no_token", name=name),
                          status=409)
    return await page(request, created={"kind": "token", "name": src.name, "secret": secret, "id": tok.id})


async def revoke(request: web.Request) -> web.Response:
    """POST /admin/sources/revoke (name, confirm=yes): the source and all its tokens refused from now on."""
    acct = _admin(request)
    form = await request.post()
    name = _field(form, "name", MAX_SOURCE_NAME)
    if form.get("confirm") != "yes":
        return await page(request, problem=i18n.translator(request[LOCALE])("src_confirm_needed", name=name),
                          status=400)
    src = await sourceops.revoke_source(request.app[WEBMAIL].mailboxes, acct.address, name, via="web")
    raise _done("revoked", name=src.name)


async def revoke_token(request: web.Request) -> web.Response:
    """POST /admin/sources/revoke-token (name, id): one token of the source refused from now on."""
    acct = _admin(request)
    form = await request.post()
    name, tid = _field(form, "name", MAX_SOURCE_NAME), _field(form, "id", MAX_ID_DIGITS)
    if not tid.isascii() or not tid.isdigit() or len(tid) > MAX_ID_DIGITS:
        raise NotFound("no such token")
    tok = await sourceops.revoke_token(request.app[WEBMAIL].mailboxes, acct.address, name, int(tid), via="web")
    raise _done("token_revoked", name=tok.label, id=tok.id)


async def webhook_set(request: web.Request) -> web.Response:
    """POST /admin/webhooks (source, url, new_secret): a generated secret is shown once in this answer."""
    acct = _admin(request)
    form = await request.post()
    source, url = _field(form, "source", MAX_SOURCE_NAME), _field(form, "url", MAX_URL)
    _ = i18n.translator(request[LOCALE])
    try:
        ep, generated = await sourceops.set_webhook(
            request.app[WEBMAIL].mailboxes, acct.address, source, url, new_secret=form.get("new_secret") == "yes",
            allow_plain_http=request.app.get(PLAIN_HTTP, False), via="web")
    except InvalidInput as e:
        return await page(request, problem=_("src_bad_webhook", detail=str(e)), status=400,
                          form={"source": source, "url": url})
    if generated:
        return await page(request, created={"kind": "webhook", "name": ep.source, "secret": ep.secret})
    raise _done("webhook_set", name=ep.source)


async def webhook_remove(request: web.Request) -> web.Response:
    """POST /admin/webhooks/remove (source): the URL and secret forgotten (waiting callbacks then go dead)."""
    acct = _admin(request)
    source = _field(await request.post(), "source", MAX_SOURCE_NAME)
    await sourceops.remove_webhook(request.app[WEBMAIL].mailboxes, acct.address, source, via="web")
    raise _done("webhook_removed", name=source)


ROUTES = (
    ("GET", "/admin/sources", page),
    ("POST", "/admin/sources", add),
    ("POST", "/admin/sources/token", token),
    ("POST", "/admin/sources/revoke", revoke),
    ("POST", "/admin/sources/revoke-token", revoke_token),
    ("POST", "/admin/webhooks", webhook_set),
    ("POST", "/admin/webhooks/remove", webhook_remove),
)
