"""Admin console pages for operations (role admin only): the queue, DKIM keys and the dashboard with its charts.

Department admins and users get 403 on every page here (the queue and the keys are the whole
installation's); signed-out visitors go to the sign-in page. Actions are POST forms through the
CSRF middleware, done by adminqueue.Operations (the JSON API's layer too), which audits them.
An unknown queue id or domain is 404 (the store's NotFound, mapped in sessions.errors_middleware).
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from aiohttp import web

from delivery.queueview import DEFAULT_PAGE, FILTER_STATES, STATES
from mailboxes.errors import InvalidInput
from mailboxes.model import Account, Role

from .. import charts, i18n
from ..api_queue import ACTIONS, MAX_ID_CHARS, ops_of
from ..context import LOCALE, WEBMAIL
from ..sessions import require_account

MAX_FILTER_CHARS = 255  # a route filter (a domain) from the query string


def _admin(request: web.Request) -> Account:
    acct = require_account(request)
    if acct.role != Role.ADMIN:
        raise web.HTTPForbidden(text=i18n.translator(request[LOCALE])("forbidden"), content_type="text/plain")
    return acct


def _when(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M") if d is not None else "–"


def _age_text(_, seconds: int | None) -> str:
    if seconds is None:
        return "–"
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m = rest // 60
    if d:
        return _("aq_age_dh", d=d, h=h)
    if h:
        return _("aq_age_hm", h=h, m=m)
    return _("aq_age_m", m=m)


def _size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _filters(source) -> dict[str, str]:
    route = str(source.get("route", "")).strip()[:MAX_FILTER_CHARS]
    state = str(source.get("state", ""))
    return {k: v for k, v in (("route", route), ("state", state if state in FILTER_STATES else "")) if v}


async def queue_page(request: web.Request) -> web.Response:
    """GET /admin/queue?route=&state=&after=: per-route figures and a page of queued messages with actions."""
    _admin(request)
    ops = ops_of(request)
    _ = i18n.translator(request[LOCALE])
    filters = _filters(request.query)
    after = request.query.get("after", "0")
    after_id = int(after) if after.isdigit() and len(after) <= 18 else 0
    page = await ops.view.page(**filters, after=after_id, limit=DEFAULT_PAGE)
    health = await ops.view.health()
    now = ops.clock()
    done = request.query.get("done", "")
    return request.app[WEBMAIL].render(
        request, "admin_queue.html", page=page, health=health, filters=filters, states=FILTER_STATES,
        by_state=[(s, health.by_state.get(s, 0)) for s in STATES],
        next_url=("/admin/queue?" + urlencode({**filters, "after": page.next_cursor})) if page.next_cursor else None,
        first_url=("/admin/queue?" + urlencode(filters)) if after_id else None,
        notice=_("aq_done_" + done, n=request.query.get("n", "0")) if done in ACTIONS else None,
        when=_when, age=lambda d: _age_text(_, int((now - d).total_seconds()) if d else None), size=_size_text,
        state_label=lambda s: _("aq_state_" + s))


async def queue_action(request: web.Request) -> web.Response:
    """POST /admin/queue/action (id, action, route, state): one message retried, held, released or deleted."""
    actor = _admin(request)
    form = await request.post()
    qid, action = str(form.get("id", "")), str(form.get("action", ""))
    if action not in ACTIONS:
        raise web.HTTPBadRequest(text=i18n.translator(request[LOCALE])("error"), content_type="text/plain")
    if not qid.isalnum() or len(qid) > MAX_ID_CHARS:
        raise web.HTTPNotFound(text=i18n.translator(request[LOCALE])("not_found"), content_type="text/plain")
    n = await ops_of(request).queue_action(actor, "web", action, qid)
    raise web.HTTPSeeOther("/admin/queue?" + urlencode({**_filters(form), "done": action, "n": n}))


async def dkim_page(request: web.Request) -> web.Response:
    """GET /admin/dkim: every local domain, its selector and the DNS TXT record to publish."""
    _admin(request)
    ops = ops_of(request)
    return request.app[WEBMAIL].render(request, "admin_queue_dkim.html", domains=await ops.dkim_domains(),
                                       selector=ops.selector, made=request.query.get("made", ""), when=_when,
                                       bad_selector="bad_selector" in request.query)


async def dkim_generate(request: web.Request) -> web.Response:
    """POST /admin/dkim/generate (domain, selector): a new signing key; the page then shows its record."""
    actor = _admin(request)
    form = await request.post()
    try:
        d = await ops_of(request).dkim_generate(actor, "web", str(form.get("domain", "")),
                                                str(form.get("selector", "")).strip() or None)
    except InvalidInput:
        raise web.HTTPSeeOther("/admin/dkim?bad_selector=1") from None
    raise web.HTTPSeeOther("/admin/dkim?" + urlencode({"made": d.domain}) + "#dkim-" + d.domain)


async def dashboard(request: web.Request) -> web.Response:
    """GET /admin/dashboard: messages per day (chart), queue health, storage per department (chart)."""
    _admin(request)
    ops = ops_of(request)
    _ = i18n.translator(request[LOCALE])
    volume = await ops.volume()
    health = await ops.view.health()
    storage = await ops.storage()
    now = ops.clock()
    days = [d.day[5:] for d in volume]
    volume_chart = charts.stacked_columns(days, [(_("aq_delivered"), "s-delivered", [d.delivered for d in volume]),
                                                 (_("aq_sent"), "s-sent", [d.sent for d in volume])])
    dept_name = lambda d: d.name or d.code or _("aq_no_department")  # noqa: E731
    storage_chart = charts.horizontal_bars([(dept_name(d), d.bytes, _size_text(d.bytes)) for d in storage])
    state_chart = charts.horizontal_bars([(_("aq_state_" + s), n, str(n)) for s, n in health.by_state.items()],
                                         css="bar-state")
    age = lambda d: _age_text(_, int((now - d).total_seconds()) if d else None)  # noqa: E731
    return request.app[WEBMAIL].render(
        request, "admin_queue_dashboard.html", volume=volume, volume_chart=volume_chart,
        volume_total=(sum(d.delivered for d in volume), sum(d.sent for d in volume)), health=health,
        state_chart=state_chart, storage=storage, storage_chart=storage_chart, dept_name=dept_name,
        size=_size_text, age=age, when=_when)
