"""The SMTP listeners (smtp, submission, submissions) from `[listen]`, and their drain on SIGTERM.

Implementation notes
- `smtp` is the port-25 role (other servers; AUTH offered after STARTTLS but
  not required), `submission` the port-587 role (STARTTLS, AUTH required),
  `submissions` the port-465 role (implicit TLS, AUTH required; RFC 8314 §3.3).
- Drain (SIGTERM): stop accepting, answer 421 to sessions between
  transactions, let transactions in flight finish (their 250 means the
  message is committed), then close what is left after DRAIN_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass, field

from ..proxylisten import ProxyListener, Trusted
from .handler import Doors, ListenerKind, PostroomSMTP

log = logging.getLogger("postroom.smtp")

DRAIN_SECONDS = 15.0
# Implicit TLS: a connection is counted against the caps once its handshake is done, so the
# handshake itself gets a short deadline (asyncio's default is 60 s).
TLS_HANDSHAKE_SECONDS = 20.0
KINDS = {
    "smtp": ListenerKind("smtp"),
    "submission": ListenerKind("submission", auth_required=True),
    "submissions": ListenerKind("submissions", implicit_tls=True, auth_required=True),
}


@dataclass
class SmtpService:
    doors: Doors
    servers: dict[str, asyncio.Server | ProxyListener] = field(default_factory=dict)
    name: str = "smtp"

    @property
    def addresses(self) -> dict[str, tuple[str, int]]:
        """Listener name -> (host, port) actually bound (port 0 in the config picks a free one)."""
        out = {}
        for n, s in self.servers.items():
            sockname = s.sockets[0].getsockname()
            out[n] = (sockname[0], sockname[1])
        return out

    async def close(self) -> None:
        for s in self.servers.values():
            s.close()  # stop accepting
        doors = self.doors
        doors.draining = True
        for session in list(doors.sessions):
            session.shut_if_idle()
        if doors.sessions:
            try:
                async with asyncio.timeout(DRAIN_SECONDS):
                    await doors.idle.wait()
            except TimeoutError:
                log.warning("smtp drain: closing %d sessions still busy", len(doors.sessions))
                for session in list(doors.sessions):
                    if session.transport is not None:
                        session.transport.abort()
        for s in self.servers.values():
            await s.wait_closed()
        log.info("smtp listeners closed")


async def open_listeners(doors: Doors, listen: dict[str, tuple[str, int] | None],
                         tls_context: ssl.SSLContext | None, proxy_trusted: Trusted | None = None,
                         sockets: dict[str, socket.socket] | None = None, turns=None) -> SmtpService:
    """Bind each configured listener; a TLS-only listener without a certificate is skipped with a warning.

    ``proxy_trusted``: balancers whose connections start with a PROXY header (mailserver/proxylisten.py).
    `sockets`: listeners already bound by a supervisor (mailserver.workers); then only those are served,
    and `turns(listener, load)` makes the worker's proxylisten.Turns on each.
    """
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command line at INFO
    svc = SmtpService(doors)
    loop = asyncio.get_running_loop()
    try:
        for name, hostport in listen.items():
            if hostport is None:
                continue
            kind = KINDS[name]
            if kind.implicit_tls and tls_context is None:
                log.warning("[listen] %s: no TLS certificate, listener not started", name)
                continue
            if kind.auth_required and tls_context is None and not doors.plaintext_auth_on_loopback:
                log.warning("[listen] %s: no TLS certificate, so nobody can log in to submit", name)
            if sockets is not None and name not in sockets:
                continue
            host, port = hostport
            if proxy_trusted or sockets is not None:  # a worker takes turns on the shared socket (proxylisten.py)
                svc.servers[name] = await ProxyListener.bind(
                    f"smtp {name}", host, port, proxy_trusted or Trusted(()), _handoff(doors, kind, tls_context),
                    sock=(sockets or {}).get(name),
                    turns=turns(f"smtp {name}", lambda: len(doors.sessions)) if turns else None)
                via = f" (PROXY protocol from {', '.join(map(str, proxy_trusted.networks))})" if proxy_trusted else ""
                log.info("smtp %s listening on %s:%d%s", name, *svc.addresses[name], via)
                continue
            svc.servers[name] = await loop.create_server(
                lambda kind=kind: PostroomSMTP(doors, kind), host=host, port=port, reuse_address=True,
                ssl=tls_context if kind.implicit_tls else None,
                ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS if kind.implicit_tls else None)
            log.info("smtp %s listening on %s:%d", name, *svc.addresses[name])
    except BaseException:
        await svc.close()
        raise
    return svc


def _handoff(doors: Doors, kind: ListenerKind, tls_context: ssl.SSLContext | None):
    """Serve a socket a ProxyListener accepted, as the client the header named."""
    async def handoff(sock, client: tuple[str, int]) -> None:
        await asyncio.get_running_loop().connect_accepted_socket(
            lambda: PostroomSMTP(doors, kind, client), sock, ssl=tls_context if kind.implicit_tls else None,
            ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS if kind.implicit_tls else None)
    return handoff


async def start(ctx) -> list:
    """The composition root's starter: needs the delivery parts put into ctx.extras by delivery.service.start."""
    parts = ctx.extras["delivery"]
    cfg = ctx.config
    doors = Doors(parts.submitter, parts.acceptor, ctx.auth, cfg.hostname, ctx.tls_context,
                  max_size=cfg.get("limits", "max_message_size"), max_recipients=cfg.get("limits", "max_recipients"),
                  plaintext_auth_on_loopback=cfg.get("tls", "allow_plaintext_auth_on_loopback"),
                  max_connections=cfg.get("limits", "smtp_connections"),
                  max_per_address=cfg.get("limits", "smtp_connections_per_address"),
                  data_timeout=float(cfg.get("limits", "smtp_data_timeout")))
    svc = await open_listeners(doors, {n: cfg.listen(n) for n in KINDS}, ctx.tls_context,
                               Trusted(cfg.get("listen", "proxy_trusted")), ctx.extras.get("sockets"),
                               ctx.extras.get("turns"))
    ctx.extras["smtp"] = svc
    return [svc]
