"""Delivered and failed callbacks for workflow events, written to the webhook outbox in the transaction that settles the event (issue 11 point 5).

Implementation notes (invariants)
- One callback per outcome: `record` is an EventStore settle hook, so the outbox row commits
  with the event's final state or not at all (no window for a crash between the two), and a
  settle that changes nothing (a lapsed claim settled late, a second node) records nothing.
  A resent event settles again and gets a new callback (a new outcome).
- "delivered": the message was written to every recipient's mailbox (or held for the digest
  a recipient chose); "failed": it could not be, with the reason. The outcome is the event's:
  one message is written to all its recipients in one submission.
- The body stays under the outbox's limit: at most MAX_LISTED addresses are named.
- Sources without a webhook endpoint get nothing (`enqueue` returns None).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from mailboxes import schema as t
from mailboxes.errors import InvalidInput
from mailboxes.events import FAILED, SENT, Event, Settled

from .outbox import enqueue_sync

log = logging.getLogger("postroom.events")

KINDS = {SENT: "delivered", FAILED: "failed"}
MAX_LISTED = 500  # recipient addresses (and unknown recipients) named in one callback; the rest are counted


def payload(ev: Event, state: str, error: str | None) -> dict:
    """The callback's `data`: which event, its outcome, whom it reached (docs/webhooks.md)."""
    return {"id": ev.ext_id, "type": ev.type, "item": ev.item, "outcome": KINDS[state],
            "recipients": [a for _, a in ev.recipients[:MAX_LISTED]], "recipients_total": len(ev.recipients),
            "unknown": list(ev.unknown[:MAX_LISTED]), "error": error}


# The names of the settled events' sources that have a webhook endpoint: asked once per settle
# transaction (once per event, it was a third of the settles' time holding the shared writer).
_WITH_ENDPOINT = (select(t.event_sources.c.id, t.event_sources.c.name)
                  .join(t.webhook_endpoints, t.webhook_endpoints.c.source == t.event_sources.c.name)
                  .where(t.event_sources.c.id.in_(bindparam("sources", expanding=True))))


class Recorder:
    """The settle hook: records `delivered` or `failed` for the event's source in the settle's transaction.

    `written` counts the callbacks written so far (committed once the settle returns): the
    sender is poked only when it grew, not after every settled event of sources without an
    endpoint (each poke was a claim, a write transaction, for nothing).
    """

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.written = 0

    def __call__(self, conn: Connection, final: list[Settled]) -> None:
        names = dict(conn.execute(_WITH_ENDPOINT, {"sources": sorted({ev.source_id for ev, _, _ in final})}).all())
        for ev, state, error in final:
            name = names.get(ev.source_id)
            if name is None:
                continue  # no webhook endpoint: nothing to call back, and no body built for nothing
            try:
                enqueue_sync(conn, name, KINDS[state], payload(ev, state, error), clock=self.clock)
                self.written += 1
            except InvalidInput as exc:  # checked before anything is written: the outcome still commits
                log.error("no %s callback for event %d (source %s): %s", KINDS[state], ev.id, name, exc)
