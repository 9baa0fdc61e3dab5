"""The JSON API's operations routes (role admin only): the queue, DKIM keys and the dashboard's figures.

Registered by api.make_api from ROUTES; the work is done by adminqueue.Operations, which the
console pages use too. Department admins and users get 403 on every route here (the queue and
the keys are the whole installation's), an unknown queue id or domain 404, all as RFC 9457
problem details (api.problem).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from delivery.queueview import DEFAULT_PAGE, FILTER_STATES, MAX_PAGE, Health, QueueItem, Recipient, RouteFigures
from mailboxes.errors import InvalidInput, NotFound

from . import api as core
from .adminqueue import DepartmentStorage, DkimDomain, Operations

OPERATIONS: web.AppKey[Operations] = web.AppKey("operations", Operations)  # set on the webmail app (config_dict)
ACTIONS = ("retry", "hold", "release", "delete")
MAX_ID_CHARS = 32  # a queue id in a URL (the column's width)


def ops_of(request: web.Request) -> Operations:
    return request.config_dict[OPERATIONS]


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d is not None else None


def item_json(i: QueueItem) -> dict[str, Any]:
    return {"id": i.queue_id, "mail_from": i.mail_from, "size": i.size, "created_at": _iso(i.created_at),
            "origin": i.origin, "submitter": i.submitter, "recipients": i.recipients, "states": i.states,
            "deferred": i.deferred, "attempts": i.attempts, "next_attempt_at": _iso(i.next_attempt_at),
            "last_error": i.last_error}


def recipient_json(r: Recipient) -> dict[str, Any]:
    return {"address": r.rcpt, "state": r.state, "attempts": r.attempts,
            "next_attempt_at": _iso(r.next_attempt_at), "last_error": r.last_error}


def route_json(r: RouteFigures, now: datetime) -> dict[str, Any]:
    return {"route": r.route, "via": r.via, "messages": r.messages, "recipients": r.recipients,
            "oldest_at": _iso(r.oldest), "oldest_age_seconds": _age(r.oldest, now), "urgent": r.urgent,
            "state": r.state, "down_since": _iso(r.down_since), "next_probe_at": _iso(r.next_probe_at),
            "last_error": r.last_error}


def dkim_json(d: DkimDomain) -> dict[str, Any]:
    return {"domain": d.domain, "selector": d.selector, "has_key": d.selector is not None,
            "created_at": _iso(d.created_at), "record_name": d.record_name, "txt": d.txt, "zone_line": d.zone_line}


def storage_json(d: DepartmentStorage) -> dict[str, Any]:
    return {"department": d.code or None, "name": d.name, "accounts": d.accounts, "bytes": d.bytes,
            "messages": d.messages, "quota_bytes": d.quota_bytes}


def health_json(h: Health, now: datetime) -> dict[str, Any]:
    return {"by_state": h.by_state, "deferred": h.deferred, "messages": h.messages, "oldest_at": _iso(h.oldest),
            "oldest_age_seconds": _age(h.oldest, now), "routes": [route_json(r, now) for r in h.routes],
            "deferred_messages": [item_json(i) for i in h.deferred_items]}


def _age(d: datetime | None, now: datetime) -> int | None:
    return max(0, int((now - d).total_seconds())) if d is not None else None


def _queue_id(request: web.Request) -> str:
    qid = request.match_info["id"]
    if not qid.isalnum() or len(qid) > MAX_ID_CHARS:
        raise web.HTTPNotFound()
    return qid


async def list_queue(request: web.Request) -> web.Response:
    """GET /api/v1/queue?route=&state=&after=&limit=: a page of queued messages, oldest first."""
    core._require_admin(request)
    state = request.query.get("state") or None
    if state is not None and state not in FILTER_STATES:
        return core.problem(400, "Bad Request", f"state must be one of {', '.join(FILTER_STATES)}", field="state")
    try:
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", str(DEFAULT_PAGE)))
    except ValueError:
        return core.problem(400, "Bad Request", "after and limit must be integers", field="limit")
    if after < 0 or not 1 <= limit <= MAX_PAGE:
        return core.problem(400, "Bad Request", f"after >= 0 and 1 <= limit <= {MAX_PAGE}", field="limit")
    page = await ops_of(request).view.page(route=request.query.get("route") or None, state=state, after=after,
                                            limit=limit)
    return web.json_response({"total": page.total, "next_after": page.next_cursor,
                              "items": [item_json(i) for i in page.items]})


async def queue_routes(request: web.Request) -> web.Response:
    """GET /api/v1/queue/routes: pending messages per route with the age of the oldest."""
    core._require_admin(request)
    ops = ops_of(request)
    now = ops.clock()
    return web.json_response({"items": [route_json(r, now) for r in await ops.view.route_figures()]})


async def get_queued(request: web.Request) -> web.Response:
    """GET /api/v1/queue/{id}: one message with its recipients."""
    core._require_admin(request)
    try:
        d = await ops_of(request).view.detail(_queue_id(request))
    except NotFound:
        return core.problem(404, "Not Found", "no such queued message")
    return web.json_response({**item_json(d.item), "recipient_list": [recipient_json(r) for r in d.recipients]})


async def _act(request: web.Request, action: str) -> web.Response:
    actor = core._require_admin(request)
    qid = _queue_id(request)
    try:
        n = await ops_of(request).queue_action(actor, "api", action, qid)
    except NotFound:
        return core.problem(404, "Not Found", "no such queued message")
    return web.json_response({"id": qid, "action": action, "recipients": n})


async def retry(request: web.Request) -> web.Response:
    """POST /api/v1/queue/{id}/retry."""
    return await _act(request, "retry")


async def hold(request: web.Request) -> web.Response:
    """POST /api/v1/queue/{id}/hold."""
    return await _act(request, "hold")


async def release(request: web.Request) -> web.Response:
    """POST /api/v1/queue/{id}/release."""
    return await _act(request, "release")


async def delete(request: web.Request) -> web.Response:
    """DELETE /api/v1/queue/{id}: drop the message without a bounce."""
    return await _act(request, "delete")


async def list_dkim(request: web.Request) -> web.Response:
    """GET /api/v1/dkim: every local domain, its selector and the TXT record to publish."""
    core._require_admin(request)
    return web.json_response({"items": [dkim_json(d) for d in await ops_of(request).dkim_domains()]})


async def generate_dkim(request: web.Request) -> web.Response:
    """POST /api/v1/dkim/{domain}/generate with an optional JSON body {"selector": "..."}."""
    actor = core._require_admin(request)
    selector = None
    if request.can_read_body:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return core.problem(400, "Bad Request", "the body must be a JSON object")
        if not isinstance(body, dict) or not isinstance(body.get("selector", ""), str):
            return core.problem(400, "Bad Request", "selector must be a string", field="selector")
        selector = body.get("selector") or None
    try:
        d = await ops_of(request).dkim_generate(actor, "api", request.match_info["domain"], selector)
    except NotFound:
        return core.problem(404, "Not Found", "no such local domain")
    except InvalidInput as exc:
        return core.problem(400, "Bad Request", str(exc), field="selector")
    return web.json_response(dkim_json(d), status=201)


async def stats(request: web.Request) -> web.Response:
    """GET /api/v1/stats: messages per day (14 days), queue health, storage per department."""
    core._require_admin(request)
    ops = ops_of(request)
    now = ops.clock()
    return web.json_response({
        "volume": [{"day": d.day, "delivered": d.delivered, "sent": d.sent} for d in await ops.volume()],
        "queue": health_json(await ops.view.health(), now),
        "storage": [storage_json(d) for d in await ops.storage()]})


ROUTES = (
    ("GET", "/queue", list_queue),
    ("GET", "/queue/routes", queue_routes),
    ("GET", "/queue/{id}", get_queued),
    ("POST", "/queue/{id}/retry", retry),
    ("POST", "/queue/{id}/hold", hold),
    ("POST", "/queue/{id}/release", release),
    ("DELETE", "/queue/{id}", delete),
    ("GET", "/dkim", list_dkim),
    ("POST", "/dkim/{domain}/generate", generate_dkim),
    ("GET", "/stats", stats),
)
