"""The events API under /api/v1/: POST an event or a batch with a source token, read one back, per-person preferences.

The handlers are mounted by the webmail's API sub-application (webmail/api.py), which authenticates:
"source" routes get the source's token, "person" routes the account an admin-kind token acts as.
Bodies are read here with their own caps (MAX_EVENT_BYTES, MAX_BATCH_BYTES) and errors are
RFC 9457 problem details naming the field (`field` extension member, RFC 9457 §3.2).

Answers (contract)
- 202 `{"id", "event", "recipients": n, "unknown": [{"recipient", "reason"}]}`: the event row is
  committed; the same body again for a retried post of the same id (header `Idempotent-Replayed: true`);
  409 when that id was used for a different event.
- batch: 202 `{"results": [...]}` with one answer per event in order; an event that reaches nobody is
  answered 422 in its result, the others are accepted; a malformed event refuses the whole batch (400).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from delivery.queue import new_queue_id
from delivery.submit import DirectoryCache
from mailboxes.apitokens import ApiToken
from mailboxes.errors import InvalidInput, NotFound
from mailboxes.events import MODES, Event, EventStore, NewEvent
from mailboxes.model import Account, Role
from mailboxes.offload import offload_if_large

from . import validate
from .recipients import Expander, TooMany

MAX_EVENT_BYTES = 128 * 1024  # one event's JSON
MAX_BATCH = 1000  # events per batch request
MAX_BATCH_BYTES = 8 * 1024 * 1024  # a batch's JSON
MAX_BATCH_REACH = 100_000  # people a batch reaches in all (its events' expansions held in memory at once)
PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", **extra) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra

    def response(self) -> web.Response:
        body = {"type": "about:blank", "title": self.title, "status": self.status,
                **({"detail": self.detail} if self.detail else {}), **self.extra}
        return web.Response(status=self.status, text=json.dumps(body, ensure_ascii=False), content_type=PROBLEM_TYPE)


def field_problem(e: validate.FieldError, prefix: str = "") -> Problem:
    name = f"{prefix}.{e.field}" if prefix and e.field else (prefix or e.field)
    return Problem(400, "Bad Request", f"{name}: {e.detail}" if name else e.detail, field=name)


async def _json(request: web.Request, cap: int):
    if request.content_type != "application/json":
        raise Problem(415, "Unsupported Media Type", "send application/json")
    if request.content_length is not None and request.content_length > cap:
        raise Problem(413, "Content Too Large", f"at most {cap} bytes")
    buf = bytearray()
    async for chunk in request.content.iter_any():
        buf += chunk
        if len(buf) > cap:
            raise Problem(413, "Content Too Large", f"at most {cap} bytes")
    try:
        return await offload_if_large(len(buf), json.loads, bytes(buf))
    except (ValueError, RecursionError):
        raise Problem(400, "Bad Request", "the body is not JSON", field="") from None


def answer(ev: Event) -> dict:
    """The answer to a post of this event: the same for every post of its id."""
    return {"id": ev.ext_id, "event": ev.id, "recipients": len(ev.recipients), "unknown": list(ev.unknown)}


@dataclass
class EventsApi:
    store: EventStore
    directory: DirectoryCache

    async def _prepare(self, posted: validate.PostedEvent, source_id: int,
                       expander: Expander) -> NewEvent | Problem:
        try:
            people, unknown = await expander.expand(posted.recipients)
        except TooMany as exc:
            return Problem(422, "Unprocessable Content", str(exc), field="recipients")
        if not people:
            return Problem(422, "Unprocessable Content", "none of the recipients is known", field="recipients",
                           unknown=[u.json() for u in unknown])
        return NewEvent(source_id, posted.id, posted.type, posted.item, posted.urgency, posted.locale,
                        posted.payload(), posted.fingerprint, tuple(people), tuple(u.json() for u in unknown),
                        new_queue_id())

    @staticmethod
    def _result(row: Event, created: bool, posted: validate.PostedEvent) -> tuple[int, dict, bool]:
        if row.fingerprint != posted.fingerprint:
            return 409, {"type": "about:blank", "title": "Conflict", "status": 409, "field": "id",
                         "detail": f"event id {posted.id} was used for a different event"}, False
        return 202, answer(row), not created

    async def post_event(self, request: web.Request, token: ApiToken) -> web.Response:
        """POST /api/v1/events."""
        try:
            posted = validate.event(await _json(request, MAX_EVENT_BYTES))
            new = await self._prepare(posted, token.source_id, Expander(self.directory))
            if isinstance(new, Problem):
                raise new
        except validate.FieldError as e:
            return field_problem(e).response()
        except Problem as p:
            return p.response()
        [(row, created)] = await self.store.accept([new])
        status, body, replayed = self._result(row, created, posted)
        return web.json_response(body, status=status, content_type=PROBLEM_TYPE if status >= 400 else "application/json",
                                 headers={"Idempotent-Replayed": "true"} if replayed else None)

    async def post_batch(self, request: web.Request, token: ApiToken) -> web.Response:
        """POST /api/v1/events/batch: {"events": [...]} with at most MAX_BATCH events."""
        try:
            obj = await _json(request, MAX_BATCH_BYTES)
            items = obj.get("events") if isinstance(obj, dict) else None
            if not isinstance(items, list) or not items:
                raise Problem(400, "Bad Request", "events: a non-empty list of events", field="events")
            if len(items) > MAX_BATCH:
                raise Problem(413, "Content Too Large", f"at most {MAX_BATCH} events per batch", field="events")
            posted = []
            for i, item in enumerate(items):
                try:
                    posted.append(validate.event(item))
                except validate.FieldError as e:
                    raise field_problem(e, f"events[{i}]") from None
        except Problem as p:
            return p.response()
        expander = Expander(self.directory)
        prepared, reach = [], 0
        for p in posted:
            prepared.append(await self._prepare(p, token.source_id, expander))
            reach += len(prepared[-1].recipients) if isinstance(prepared[-1], NewEvent) else 0
            if reach > MAX_BATCH_REACH:
                return Problem(413, "Content Too Large", f"the batch reaches more than {MAX_BATCH_REACH} people "
                                                         "in all; send it in smaller batches", field="events").response()
        stored = iter(await self.store.accept([n for n in prepared if isinstance(n, NewEvent)]))
        results = []
        for p, n in zip(posted, prepared):
            if isinstance(n, Problem):
                results.append({"id": p.id, "status": n.status, "detail": n.detail, "field": n.extra["field"],
                                **({"unknown": n.extra["unknown"]} if "unknown" in n.extra else {})})
                continue
            row, created = next(stored)
            status, body, replayed = self._result(row, created, p)
            results.append({"status": status, **body, **({"replayed": True} if replayed else {})})
        return web.json_response({"results": results}, status=202)

    async def get_event(self, request: web.Request, token: ApiToken) -> web.Response:
        """GET /api/v1/events/{id}: one of this source's events, with its state."""
        ext_id = request.match_info["id"]
        rows = await self.store.find(token.source_id, ext_id)
        if rows is None:
            return Problem(404, "Not Found", "no such event of this source").response()
        return web.json_response({**answer(rows), "state": rows.state, "type": rows.type})

    # --- preferences (a person's token, or an admin's for anyone) -----------------------

    async def _account(self, request: web.Request, actor: Account) -> Account:
        who = request.match_info.get("address")
        if who is None or who.lower() == actor.address:
            return actor
        if actor.role != Role.ADMIN:
            raise Problem(403, "Forbidden", "only an administrator sets another account's preferences")
        try:
            return await self.directory.mb.directory.account(who)
        except (NotFound, InvalidInput):
            raise Problem(404, "Not Found", "no such account") from None

    async def get_preferences(self, request: web.Request, actor: Account) -> web.Response:
        """GET /api/v1/events/preferences[/{address}]: {"account", "modes": {type: hourly|daily}} (else immediate)."""
        try:
            acct = await self._account(request, actor)
        except Problem as p:
            return p.response()
        return web.json_response({"account": acct.address, "modes": await self.store.preferences(acct.id)})

    async def put_preferences(self, request: web.Request, actor: Account) -> web.Response:
        """PUT /api/v1/events/preferences[/{address}] with {"modes": {type: immediate|hourly|daily}}."""
        try:
            acct = await self._account(request, actor)
            obj = await _json(request, MAX_EVENT_BYTES)
            modes = obj.get("modes") if isinstance(obj, dict) else None
            if not isinstance(modes, dict) or len(modes) > MAX_PREFERENCE_TYPES:
                raise Problem(400, "Bad Request", f"modes: an object of at most {MAX_PREFERENCE_TYPES} event types",
                              field="modes")
            for type_, mode in modes.items():
                try:
                    validate.event_type(type_, f"modes.{str(type_)[:64]}")
                except validate.FieldError as e:
                    raise field_problem(e) from None
                if mode not in MODES:
                    raise Problem(400, "Bad Request", f"modes.{type_}: one of {', '.join(MODES)}",
                                  field=f"modes.{type_}")
        except Problem as p:
            return p.response()
        return web.json_response({"account": acct.address,
                                  "modes": await self.store.set_preferences(acct.id, modes)})

    def routes(self) -> list[tuple[str, str, str, Callable[..., Awaitable[web.StreamResponse]]]]:
        """(method, path under /api/v1, token kind "source" | "person", handler(request, token | account))."""
        return [
            ("POST", "/events", "source", self.post_event),
            ("POST", "/events/batch", "source", self.post_batch),
            ("GET", "/events/preferences", "person", self.get_preferences),
            ("PUT", "/events/preferences", "person", self.put_preferences),
            ("GET", "/events/preferences/{address}", "person", self.get_preferences),
            ("PUT", "/events/preferences/{address}", "person", self.put_preferences),
            ("GET", "/events/{id}", "source", self.get_event),
        ]


MAX_PREFERENCE_TYPES = 100  # event types in one PUT
