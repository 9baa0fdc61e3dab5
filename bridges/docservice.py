"""The official-document parts wired from the configuration: the store's Documents, the Dispatcher, and the intake service of `postroom serve`."""

from __future__ import annotations

import logging

from delivery.queue import node_id
from mailboxes.documents import Documents
from mailboxes.leases import Leases

from . import outbox
from .docapi import DocumentsApi
from .docpages import DocumentPages
from .dispatch import Dispatcher
from .intake import Intake, IntakeConfig
from .manifest import MEDIA_TYPE
from .reminders import Reminders, thresholds

log = logging.getLogger("postroom.documents")


def documents(mb, config, *, poke=None) -> Documents:
    """`poke`: the running server's webhook Sender.poke, called once a step's callback is committed (None: the
    CLI, whose callbacks the server's sender finds at its next poll, bridges.webhooks.IDLE_POLL_SECONDS)."""
    source = config.get("documents", "webhook_source")
    return Documents(mb.router.central, registration_pattern=config.get("documents", "registration_pattern"),
                     report=webhook_report(source) if source else None, reported=poke if source else None)


def webhook_report(source: str, clock=outbox.utcnow):
    """Documents' `report`: each new step becomes a callback to `source`, in the step's own transaction."""
    async def report(conn, kind: str, payload: dict) -> None:
        await outbox.enqueue(conn, source, kind, payload, clock=clock)
    return report


def dispatcher(mb, config, delivery, *, poke=None) -> Dispatcher:
    """`delivery`: delivery.service.DeliveryParts (its submitter is the one submit())."""
    return Dispatcher(documents(mb, config, poke=poke), delivery.submitter.submit, hostname=config.hostname,
                      classified_label=config.get("labels", "classified"))


def intake(mb, config, delivery, *, holder: str = "", poke=None) -> Intake | None:
    """The intake of this site's documents account, or None when [documents] org is not set."""
    org = config.get("documents", "org")
    if not org:
        return None
    cfg = IntakeConfig(org, config.get("documents", "address").lower(),
                       tuple(a.lower() for a in config.get("documents", "registrars")), hostname=config.hostname)
    return Intake(mb, documents(mb, config, poke=poke), delivery.acceptor.verify, delivery.submitter.submit, cfg,
                  leases=Leases(mb.router.central), holder=holder or node_id())


def track_queue(docs: Documents):
    """A queue worker hook: a document message's recipient row sent, or given up on, is noted in the tracker."""
    marker = MEDIA_TYPE.encode()

    async def hook(rows, states, results, data: bytes) -> None:
        if marker not in data:  # not a document message: nothing to look up (most mail)
            return
        for row, state, res in zip(rows, states, results):
            if state in ("sent", "failed"):
                await docs.queue_outcome(row.queue_id, sent=state == "sent", failure=res.reply)
    return hook


async def start(ctx) -> list:
    """Started after delivery and the bridges, before the webmail: the tracker's queue hook, the documents API routes and pages (ctx.extras["documents"]), and the intake when this site receives documents."""
    parts = ctx.extras["delivery"]
    sender = ctx.extras.get("webhooks")  # started before us (mailserver/app.py)
    poke = sender.poke if sender is not None else None
    parts.worker.settled_hooks.append(track_queue(documents(ctx.mailboxes, ctx.config, poke=poke)))
    svc = intake(ctx.mailboxes, ctx.config, parts, poke=poke)
    cfg = ctx.config
    api = DocumentsApi(documents(ctx.mailboxes, cfg, poke=poke), dispatcher(ctx.mailboxes, cfg, parts, poke=poke), svc,
                       frozenset(a.lower() for a in cfg.get("documents", "dispatchers")),
                       frozenset(a.lower() for a in cfg.get("documents", "registrars")))
    ctx.extras["api_routes"] = (*ctx.extras.get("api_routes", ()), *api.routes())  # the webmail mounts them
    ctx.extras["documents"] = DocumentPages(api, ctx.mailboxes, overdue_after=thresholds(cfg),
                                            **({"clock": ctx.extras["clock"]} if "clock" in ctx.extras else {}))
    reminders = Reminders(documents(ctx.mailboxes, cfg, poke=poke), parts.submitter.submit, after=thresholds(cfg),
                          hostname=cfg.hostname)
    await reminders.start()
    if svc is None:
        return [reminders]
    await svc.start()
    log.info("documents intake org=%s address=%s registrars=%d", svc.cfg.org, svc.cfg.address,
             len(svc.cfg.registrars))
    return [reminders, svc]
