"""The JSON API's audit route (role admin only): GET /api/v1/audit, the hash-chained log newest first (issue 13).

Registered by api.make_api from ROUTES. Filters: actor, action, target, text, since/until (ISO times,
UTC when no offset), `before` (a sequence number: the next page) and `limit`. Each page read is
itself an audit entry (audit.view, via api), as in the console.
"""

from __future__ import annotations

from datetime import datetime, timezone

from aiohttp import web

from mailboxes import auditlog

from . import api as core

DEFAULT_PAGE = 50
MAX_PAGE = 500  # entries per page at most
MAX_FILTER_CHARS = 512  # a filter value (the widest column it matches)


def _when(v: str | None) -> datetime | None:
    if not v:
        return None
    try:
        d = datetime.fromisoformat(v)
    except ValueError:
        raise web.HTTPBadRequest() from None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


async def list_audit(request: web.Request) -> web.Response:
    acct = core._require_admin(request)
    q = request.query
    if any(len(v) > MAX_FILTER_CHARS for v in q.values()):
        raise web.HTTPBadRequest()
    try:
        limit = min(max(int(q.get("limit", DEFAULT_PAGE)), 1), MAX_PAGE)
        before = int(q["before"]) if q.get("before") else None
    except ValueError:
        raise web.HTTPBadRequest() from None
    sel = auditlog.query(actor=q.get("actor"), action=q.get("action"), target=q.get("target"), text=q.get("text"),
                         since=_when(q.get("since")), until=_when(q.get("until")), before=before, limit=limit)
    mb = request.app[core.MAILBOXES]
    async with mb.router.central.read() as conn:
        rows = (await conn.execute(sel)).all()
    search = {k: v for k, v in q.items() if k in ("actor", "action", "target", "text", "since", "until") and v}
    await mb.directory.audit_soon(acct.address, "audit.view", "audit_log", via="api", search=search,
                                  before=before or "", shown=len(rows))  # reading the log is audited too
    items = [{"seq": r.seq, "at": r.at.isoformat(), "actor": r.actor, "action": r.action, "target": r.target,
              "detail": r.detail, "hash": r.hash} for r in rows]
    return web.json_response({"items": items, "next_before": rows[-1].seq if len(rows) == limit else None})


ROUTES = (("GET", "/audit", list_audit),)
