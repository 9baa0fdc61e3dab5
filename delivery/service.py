"""Builds the delivery parts from the config (queue, routes, keys, submit, accept, outbound, worker) and starts the worker.

`start(ctx)` is the composition root's starter: it puts the parts into
`ctx.extras["delivery"]` and the one submit function into
`ctx.extras["submit"]`, for the SMTP front, the webmail and the bridges.
Tests pass a clock, an MX resolver and a dialer to `build` (no globals).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from mailboxes.leaders import on_leader_change
from mailboxes.service import Mailboxes

from .accept import Acceptor
from .keys import DkimKeys, dns_txt_lookup
from .links import Links
from .labels import Labels
from .outbound import Dialer, Outbound, tcp_dialer
from .pullroute import PullRouting
from .queue import Queue, node_id
from .routes import MxResolver, Routes, dns_resolver, no_dns
from .submit import Submitter
from .worker import Worker, retry_policy


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class DeliveryParts:
    queue: Queue
    routes: Routes
    keys: DkimKeys
    submitter: Submitter
    acceptor: Acceptor
    outbound: Outbound
    worker: Worker


def build(mb: Mailboxes, config, *, clock: Callable[[], datetime] = utcnow, resolver: MxResolver | None = None,
          dialer: Dialer = tcp_dialer, dkim_dns: Callable | None = None) -> DeliveryParts:
    """Wire the parts; `config` is a mailserver.config.Config (read with .get, never imported here)."""
    hostname = config.hostname
    central = mb.router.central
    queue = Queue(central, node=node_id(hostname), clock=clock,
                  lease=timedelta(seconds=config.get("queue", "lease")))
    if resolver is None:
        resolver = dns_resolver() if config.get("queue", "mx_lookup") else no_dns
    routes = Routes(central, resolver=resolver, clock=clock)
    keys = DkimKeys(central, clock=clock)
    labels = Labels(config.get("labels", "list"), config.get("labels", "default")) \
        if config.get("labels", "enabled") else None
    submitter = Submitter(mb, queue, keys, hostname=hostname, clock=clock, labels=labels,
                          approvers=config.get("labels", "approvers"))
    if dkim_dns is None and config.get("dkim", "dns_lookup"):
        dkim_dns = dns_txt_lookup()
    acceptor = Acceptor(submitter, keys, hostname=hostname, dns_lookup=dkim_dns)
    # Pull routes (issue 12) are held for their district; everything else goes out by SMTP.
    outbound = Outbound(routes, hostname=hostname, dialer=dialer)
    policy = retry_policy(config.get("queue", "retry_delays"), config.get("queue", "expire_after"),
                          config.get("queue", "warn_after"))
    links = Links(central, node=queue.node, clock=clock, delays=config.get("queue", "probe_delays"))
    worker = Worker(queue, submitter, outbound, policy=policy, clock=clock,
                    concurrency=config.get("queue", "workers"), links=links, pull=PullRouting(routes, submitter))
    queue.listeners.append(worker.poke)
    return DeliveryParts(queue, routes, keys, submitter, acceptor, outbound, worker)


async def start(ctx) -> list:
    parts = build(ctx.mailboxes, ctx.config, clock=ctx.extras.get("clock", utcnow))
    ctx.extras["delivery"] = parts
    ctx.extras["submit"] = parts.submitter.submit
    await parts.worker.start()
    if parts.submitter.labels is None:
        return [parts.worker]
    from .approval import Approvals, Rerouter  # approval imports submit; built only where mail is held
    rerouter = Rerouter(Approvals(parts.submitter))
    on_leader_change(ctx.mailboxes.router.central, rerouter.poke)  # the console's change: at once
    ctx.extras["rerouter"] = rerouter
    await rerouter.start()
    return [parts.worker, rerouter]
