"""The composition root: builds every part from the config, starts the listeners, drains on SIGTERM.

This is the only module that imports all five packages (see style.md,
"Layout note"). Each listener family provides `start(ctx) -> Service`; a
Service has `async close()` that stops accepting, lets sessions in flight
finish (bounded by DRAIN_SECONDS) and returns.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from mailboxes.changes import ChangeBus
from mailboxes.fanout import FanoutBus
from mailboxes.service import Mailboxes, open_mailboxes

from . import tls
from .auth import Authenticator, password_hasher
from .config import Config
from .proxylisten import ProxyListener, Trusted, Turns
from .workers import WorkerSpec, die_with, tag_logs

log = logging.getLogger("postroom")

DRAIN_SECONDS = 20.0
# A mail server builds many small long-lived objects at once (10,000 message
# records on SELECT, their rendered FETCH values in the cache). With CPython's
# default gen-0 threshold of 700 the cyclic GC re-scans them again and again:
# loading 10,000 stored parses took 225 ms, 153 ms with this threshold.
GC_THRESHOLDS = (50_000, 50, 100)


class Service(Protocol):
    name: str

    async def close(self) -> None: ...


@dataclass
class Context:
    """Everything a listener family needs, passed down (no globals)."""

    config: Config
    mailboxes: Mailboxes
    bus: ChangeBus
    auth: Authenticator
    tls_context: ssl.SSLContext | None
    extras: dict[str, object] = field(default_factory=dict)  # shared parts built by earlier starters


Starter = Callable[[Context], Awaitable[list[Service]]]


def bridge_commands():
    """The bridges' CLI module (`postroom partner`, `postroom dispatch`): reached through this composition root."""
    from bridges import cli

    return cli


def starters() -> list[Starter]:
    """The services, in start order (delivery before the listeners: they submit through it)."""
    from bridges.docservice import start as start_documents
    from bridges.pull import start as start_pull
    from bridges.webhooks import start as start_webhooks
    from bridges.service import start as start_bridges
    from delivery.service import start as start_delivery

    from .auditanchor import start as start_audit_anchor
    from .imap.server import start as start_imap
    from .retention_job import start as start_retention
    from .smtp.server import start as start_smtp
    from .watchdog import start as start_watchdog
    # Imported here, before the loop is watched: importing the webmail (aiohttp, Jinja, its views) takes
    # 150-250 ms of CPU, which the watchdog logged as a stall of every start-up when it ran inside start_webmail.
    import webmail.context  # noqa: F401
    import webmail.service  # noqa: F401
    return [start_watchdog, start_audit_anchor, start_delivery, start_webhooks, start_bridges, start_documents,
            start_pull, start_retention, start_smtp, start_imap, start_webmail]  # the watchdog first: it sees every stall


async def start_webmail(ctx: Context) -> list[Service]:
    """The webmail signs in through the same Authenticator (hashes, cache, throttle) as IMAP and SMTP."""
    from webmail.context import SignInRefused
    from webmail.selfservice import SelfService, listeners_from
    from webmail.service import start

    from .auth import AuthFailed, AuthThrottled

    async def login(address: str, password: str, ip: str | None, *, app_passwords: bool = True,
                    protocol: str = "webmail"):
        try:
            return await ctx.auth.login(address, password, ip=ip, protocol=protocol, app_passwords=app_passwords)
        except AuthThrottled as exc:
            raise SignInRefused(exc.retry_after) from None
        except AuthFailed:
            raise SignInRefused() from None

    async def reauth(address: str, password: str, ip: str | None):
        return await login(address, password, ip, app_passwords=False)

    async def check_code(account, code: str, ip: str | None) -> bool:
        try:
            return await ctx.auth.second_factor(account, code, ip=ip)
        except AuthThrottled as exc:
            raise SignInRefused(exc.retry_after) from None

    bound: dict[str, tuple[str, int]] = {}
    for family in ("imap", "smtp"):  # started before the webmail (starters())
        svc = ctx.extras.get(family)
        if svc is not None:
            bound.update(svc.addresses)
    cfg = ctx.config
    public_ports = {name: cfg.get("clients", f"{name}_port") for name in ("imaps", "imap", "submissions", "submission")}
    listeners = listeners_from(cfg.get("clients", "hostname") or cfg.hostname, bound,
                               tls=ctx.tls_context is not None, public_ports=public_ports)
    return await start(ctx, login=login, selfservice=SelfService(
        factors=ctx.auth.factors, check_code=check_code, reauth=reauth, listeners=listeners))


async def build_context(config: Config, worker: WorkerSpec | None = None) -> Context:
    bus = ChangeBus()
    if worker is not None and worker.count > 1 and config.storage_url.startswith("sqlite"):
        bus = FanoutBus(worker.bus_dir, worker.name, worker.siblings)  # on PostgreSQL: LISTEN/NOTIFY (pgbus)
        bus.start()
    mb = await open_mailboxes(config.storage(), bus=bus, hasher=password_hasher(config),
                              hash_slots=config.get("auth", "hash_threads") or None, migrate=worker is None)
    auth = Authenticator.from_config(mb.directory, config)
    ctx_tls = None
    if config.tls_cert.exists() and config.tls_key.exists():
        ctx_tls = tls.server_context(config.tls_cert, config.tls_key)
    else:
        log.warning("no TLS certificate at %s; TLS is not offered (run `postroom init`)", config.tls_cert)
    ctx = Context(config, mb, bus, auth, ctx_tls)
    if worker is not None:
        ctx.extras["sockets"] = worker.sockets()  # bound by the supervisor; nothing else is bound here
        ctx.extras["turns"] = make = partial(turns, worker)  # the workers' turns on those sockets
        # How a package that may not import mailserver (the webmail) takes its turns on a shared socket.
        ctx.extras["take_turns"] = lambda name, sock, handoff, load: ProxyListener.bind(
            name, "", 0, Trusted(()), handoff, sock=sock, turns=make(name, load))
    return ctx


def turns(worker: WorkerSpec, listener: str, load: Callable[[], int]) -> Turns | None:
    """This worker's turns on a shared listener, its load being ``load()`` connections; None when it is alone."""
    if worker.count < 2:
        return None
    return Turns(os.path.join(worker.bus_dir, f"turns-{listener.replace(' ', '-')}"), worker.slot, worker.count, load)


async def start_all(ctx: Context) -> list[Service]:
    services: list[Service] = []
    try:
        for start in starters():
            services.extend(await start(ctx))
    except BaseException:
        await stop_all(services)
        raise
    return services


async def stop_all(services: list[Service]) -> None:
    # Stop the front first (no new sessions), then what they submit to.
    for svc in reversed(services):
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                await svc.close()
        except Exception as exc:  # noqa: BLE001 - keep stopping the rest
            log.warning("stopping %s: %s", getattr(svc, "name", svc), exc)


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one: every IMAP IDLE client holds a socket.

    The usual soft limit (1024) would cap a bureau's idle connections far below
    what the server can hold in memory. Returns the limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d: %s", soft, exc)
    return soft


async def serve(config: Config, worker: WorkerSpec | None = None) -> int:
    """Serve until SIGTERM/SIGINT in this process; `worker`: as one of a supervisor's (mailserver.workers)."""
    logging.getLogger().setLevel(config.get("server", "log_level").upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations log every start otherwise
    if worker is not None:
        tag_logs(f"worker {worker.slot} pid {os.getpid()}")
        die_with(worker.supervisor)
    fds = raise_fd_limit()
    ctx = await build_context(config, worker)
    gc.set_threshold(*GC_THRESHOLDS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    services = await start_all(ctx)
    gc.freeze()  # what start-up built lives as long as the process: keep it out of every collection
    names = ", ".join(getattr(s, "name", "?") for s in services)
    log.info("postroom serving: %s (open-files limit %d)", names or "nothing (no listeners built)", fds)
    who = f" (worker {worker.slot} of {worker.count})" if worker is not None else ""
    print(f"postroom serving: {names}{who}", flush=True)
    try:
        await stop.wait()
        log.info("SIGTERM: draining")
    finally:
        await stop_all(services)
        await ctx.mailboxes.close()
        if isinstance(ctx.bus, FanoutBus):
            ctx.bus.close()
    # Stopped: a later SIGTERM (systemd signals the whole group as the supervisor forwards its own) must not
    # kill the process while Python tears down, which the supervisor would report as a failed stop.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
    log.info("postroom stopped")
    return 0
