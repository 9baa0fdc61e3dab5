"""The `postroom source` (workflow systems and their tokens) and `postroom events` (list/show/resend) subcommands.

`register(subparsers)` adds the parsers; `HANDLERS` maps each command name to an async
handler(admin, args) -> exit status, in the style of cli.py. A source's token is printed once,
at `add`; only its SHA-256 is kept. A resent event is delivered again by a running server's
events worker (it polls; at most `bridges.worker.IDLE_POLL_SECONDS` later).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable

from delivery.queue import new_queue_id
from mailboxes import sourceops
from mailboxes.events import STATES, EventStore, Sources

from .admin import Admin

Handler = Callable[[Admin, argparse.Namespace], Awaitable[int]]
MAX_LIST = 1000  # events `events list` prints at most


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("source", help="workflow systems that notify people by mail (POST /api/v1/events)")
    ss = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    ss.add_parser("add", help="add a source; prints its bearer token once").add_argument("name")
    ss.add_parser("token", help="another token for an active source, printed once (to rotate: then "
                  "`postroom token revoke` the old one)").add_argument("name")
    ss.add_parser("list")
    ss.add_parser("revoke", help="refuse the source's posts from now on (its tokens are revoked)").add_argument("name")

    s = sub.add_parser("events", help="workflow events: what was posted and what became of it")
    es = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = es.add_parser("list", help="the newest events first")
    a.add_argument("--source")
    a.add_argument("--state", choices=STATES)
    a.add_argument("--limit", type=int, default=50)
    es.add_parser("show").add_argument("event", type=int, help="the event number (first column of list)")
    es.add_parser("resend", help="deliver a sent or failed event again").add_argument("event", type=int)


async def _source(admin: Admin, args: argparse.Namespace) -> int:
    mb, actor = admin.mb, admin.actor
    if args.action in ("add", "token"):
        make = sourceops.add_source if args.action == "add" else sourceops.new_token
        src, secret, tok = await make(mb, actor, args.name, via="cli")
        print(f"source {src.name} token {tok.id}: {secret}")
        print("(shown once: only its SHA-256 is stored)")
    elif args.action == "list":
        for src in await Sources(mb.router.central).list():
            state = f"revoked {src.revoked_at:%Y-%m-%d %H:%M}" if src.revoked_at else "active"
            print(f"{src.name}\tcreated {src.created_at:%Y-%m-%d %H:%M}\t{state}")
    else:
        src = await sourceops.revoke_source(mb, actor, args.name, via="cli")
        print(f"revoked source {src.name}")
    return 0


async def _events(admin: Admin, args: argparse.Namespace) -> int:
    central = admin.mb.router.central
    store, sources = EventStore(central), Sources(central)
    names = {s.id: s.name for s in await sources.list()}
    if args.action == "list":
        source_id = (await sources.get(args.source)).id if args.source else None
        for ev in await store.list(source_id=source_id, state=args.state, limit=max(1, min(args.limit, MAX_LIST))):
            print(f"{ev.id}\t{names.get(ev.source_id, '?')}\t{ev.ext_id}\t{ev.type}\t{ev.state}\t"
                  f"{ev.created_at:%Y-%m-%d %H:%M:%S}\t{len(ev.recipients)} recipients\t{ev.payload['title']}")
    elif args.action == "show":
        ev = await store.get(args.event)
        print(json.dumps({
            "event": ev.id, "source": names.get(ev.source_id, "?"), "id": ev.ext_id, "type": ev.type,
            "item": ev.item, "urgency": ev.urgency, "locale": ev.locale, "state": ev.state, "attempts": ev.attempts,
            "queue_id": ev.queue_id, "created_at": ev.created_at.isoformat(),
            "sent_at": ev.sent_at.isoformat() if ev.sent_at else None, "last_error": ev.last_error,
            "reached": [a for _, a in ev.recipients], "unknown": list(ev.unknown), **ev.payload,
        }, ensure_ascii=False, indent=2))
    else:
        ev = await store.resend(args.event, new_queue_id())
        await admin.audited("events.resend", str(ev.id), queue_id=ev.queue_id)
        print(f"event {ev.id} queued again as {ev.queue_id}")
    return 0


HANDLERS: dict[str, Handler] = {"source": _source, "events": _events}
