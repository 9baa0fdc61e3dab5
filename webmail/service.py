"""The webmail's starter: serves make_app() on `[listen] http`, and on `[listen] https` with the server's certificate."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from delivery.approval import Approvals

from .adminqueue import Operations
from .app import compile_templates, make_app
from .context import Login
from .selfservice import SelfService
from .uploads import spool_root

log = logging.getLogger("postroom.webmail")

SHUTDOWN_SECONDS = 10.0  # requests in flight get this long at stop


class WebmailService:
    name = "webmail"

    def __init__(self, runner: web.AppRunner, app: web.Application) -> None:
        self.runner = runner
        self.app = app
        self.addresses: dict[str, tuple[str, int]] = {}
        self.listeners: list = []  # a worker's turns on the shared sockets (mailserver.proxylisten.ProxyListener)

    async def close(self) -> None:
        for listener in self.listeners:  # stop accepting first; the runner then ends the connections
            listener.close()
        for listener in self.listeners:
            await listener.wait_closed()
        await self.runner.cleanup()


def _handoff(runner: web.AppRunner, tls):
    """Serve a connection a worker accepted from the shared socket as aiohttp's own sites do."""
    async def handoff(sock, _client: tuple[str, int]) -> None:
        await asyncio.get_running_loop().connect_accepted_socket(runner.server, sock, ssl=tls)
    return handoff


def _operations(ctx) -> Operations:
    """The admin console's queue and keys are the running server's (a retry wakes its worker)."""
    parts = ctx.extras.get("delivery")
    extra = {"clock": ctx.extras["clock"]} if "clock" in ctx.extras else {}
    if parts is None:
        return Operations(ctx.mailboxes, selector=ctx.config.get("dkim", "selector"), **extra)
    return Operations(ctx.mailboxes, queue=parts.queue, keys=parts.keys, poke=parts.worker.poke,
                      selector=ctx.config.get("dkim", "selector"), **extra)


def _approvals(ctx):
    """Decisions on held mail by the running server's submitter (None without delivery or labels)."""
    parts = ctx.extras.get("delivery")
    if parts is None or parts.submitter.labels is None:
        return None
    return Approvals(parts.submitter)


async def start(ctx, *, login: Login, selfservice: SelfService | None = None) -> list:
    """`ctx` is the composition root's Context (read through its attributes, never imported here)."""
    cfg = ctx.config
    plain, secure = cfg.listen("http"), cfg.listen("https")
    if plain is None and secure is None:
        return []
    await asyncio.to_thread(compile_templates)  # beside the loop; make_app then loads them compiled
    app = make_app(ctx.mailboxes, login=login, submit=ctx.extras.get("submit"), bus=ctx.bus,
                   hostname=cfg.hostname, selfservice=selfservice, upload_dir=spool_root(cfg.data_dir),
                   api_routes=tuple(ctx.extras.get("api_routes", ())),
                   operations=_operations(ctx), approvals=_approvals(ctx), documents=ctx.extras.get("documents"),
                   forwarded_trusted=tuple(cfg.get("listen", "http_forwarded_trusted")),
                   audit_anchor=cfg.audit_anchor_path, webhooks_plain_http=cfg.get("webhooks", "allow_plain_http"),
                   **({"clock": ctx.extras["clock"]} if "clock" in ctx.extras else {}))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    svc = WebmailService(runner, app)
    sockets = ctx.extras.get("sockets")  # a supervisor's worker serves the sockets it was given, only those
    try:
        for key, where, tls in (("http", plain, None), ("https", secure, ctx.tls_context)):
            if where is None or (sockets is not None and key not in sockets):
                continue
            if key == "https" and tls is None:
                log.warning("[listen] https: no TLS certificate, so the webmail is not served over TLS")
                continue
            if sockets is not None:  # a worker takes turns on the shared socket (mailserver/proxylisten.py)
                listener = await ctx.extras["take_turns"](f"webmail {key}", sockets[key], _handoff(runner, tls),
                                                          lambda: len(runner.server.connections))
                svc.listeners.append(listener)
                svc.addresses[key] = tuple(listener.sockets[0].getsockname()[:2])
            else:
                site = web.TCPSite(runner, where[0], where[1], ssl_context=tls)
                await site.start()
                svc.addresses[key] = tuple(runner.addresses[-1][:2])  # the bound port when 0 was asked for
            log.info("webmail listening on %s %s:%d", key, *svc.addresses[key])
    except BaseException:
        await runner.cleanup()
        raise
    return [svc]
