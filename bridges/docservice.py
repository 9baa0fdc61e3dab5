"""The official-document parts wired from the configuration: the store's Documents, the Dispatcher, and the intake service of `postroom serve`."""

from __future__ import annotations

import logging

from mailboxes.documents import Documents

from .dispatch import Dispatcher
from .intake import Intake, IntakeConfig
from .manifest import MEDIA_TYPE

log = logging.getLogger("postroom.documents")


def documents(mb, config) -> Documents:
    return Documents(mb.router.central, registration_pattern=config.get("documents", "registration_pattern"))


def dispatcher(mb, config, delivery) -> Dispatcher:
    """`delivery`: delivery.service.DeliveryParts (its submitter is the one submit())."""
    return Dispatcher(documents(mb, config), delivery.submitter.submit, hostname=config.hostname,
                      classified_label=config.get("labels", "classified"))


def intake(mb, config, delivery) -> Intake | None:
    """The intake of this site's documents account, or None when [documents] org is not set."""
    org = config.get("documents", "org")
    if not org:
        return None
    cfg = IntakeConfig(org, config.get("documents", "address").lower(),
                       tuple(a.lower() for a in config.get("documents", "registrars")), hostname=config.hostname)
    return Intake(mb, documents(mb, config), delivery.acceptor.verify, delivery.submitter.submit, cfg)


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
    """Started after delivery by `postroom serve`: the tracker's queue hook, and the intake when this site receives documents."""
    parts = ctx.extras["delivery"]
    parts.worker.settled_hooks.append(track_queue(documents(ctx.mailboxes, ctx.config)))
    svc = intake(ctx.mailboxes, ctx.config, parts)
    if svc is None:
        return []
    await svc.start()
    log.info("documents intake org=%s address=%s registrars=%d", svc.cfg.org, svc.cfg.address,
             len(svc.cfg.registrars))
    return [svc]
