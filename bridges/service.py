"""The bridges' starter: the workflow events store, its worker and its API routes, wired from the composition root's context.

Puts the API routes into `ctx.extras["api_routes"]` (the webmail's /api/v1 sub-application mounts
them) and the parts into `ctx.extras["events"]`. Needs `ctx.extras["delivery"]` (start after it); pokes `ctx.extras["webhooks"]` after a settle.
Event claims use the delivery queue's lease (`[queue] lease`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from delivery.submit import utcnow
from mailboxes.events import WAKE_TOPIC, EventStore, Sources

from . import callbacks
from .api import EventsApi
from .notify import Templates
from .worker import EventWorker

OVERRIDE_DIR = ("templates", "events")  # under [server] data_dir: an administrator's templates


@dataclass
class EventParts:
    store: EventStore
    sources: Sources
    worker: EventWorker
    api: EventsApi


def build(ctx) -> EventParts:
    cfg = ctx.config
    clock = ctx.extras.get("clock", utcnow)
    central = ctx.mailboxes.router.central
    delivery = ctx.extras["delivery"]
    bus = ctx.mailboxes.store.bus
    store = EventStore(central, clock=clock, lease=timedelta(seconds=cfg.get("queue", "lease")),
                       node=ctx.mailboxes.store.node)
    sources = Sources(central, clock=clock)
    names: dict[int, str] = {}

    async def source_name(source_id: int) -> str:
        if source_id not in names:
            names[source_id] = (await sources.by_id(source_id)).name
        return names[source_id]

    templates = Templates(cfg.data_dir.joinpath(*OVERRIDE_DIR))
    worker = EventWorker(store, delivery.submitter, sources=source_name, templates=templates,
                         hostname=cfg.hostname, clock=clock)
    # New rows wake the events workers of every process when this one wants help (EventWorker.wants_help):
    # the SQLite siblings (FanoutBus), the other PostgreSQL nodes (the insert's NOTIFY, store.wake_others).
    bus.on_wake(WAKE_TOPIC, worker.poke)
    store.listeners.append(lambda new: (bus.wake if worker.wants_help(new) else bus.wake_here)(WAKE_TOPIC))
    store.wake_others = worker.wants_help
    recorder = callbacks.Recorder(clock)
    store.settle_hooks.append(recorder)  # delivered/failed, committed with the outcome
    sender = ctx.extras.get("webhooks")  # started before us (mailserver/app.py)
    if sender is not None:
        poked = 0

        async def poke_sender(_ev, _state) -> None:
            nonlocal poked
            if recorder.written != poked:  # only when a callback was written (committed by now)
                poked = recorder.written
                sender.poke()
        worker.on_settled.append(poke_sender)
    return EventParts(store, sources, worker, EventsApi(store, delivery.submitter.directory))


async def start(ctx) -> list:
    parts = build(ctx)
    ctx.extras["events"] = parts
    ctx.extras["api_routes"] = tuple(parts.api.routes())
    await parts.worker.start()
    return [parts.worker]
