"""The thin asyncio adapter for IMAP: listeners ``imap`` (STARTTLS) and ``imaps`` (implicit TLS), one Session per connection.

Implementation notes
- Bytes from the socket go into the sans-I/O CommandParser; its events go to the Session;
  what the Session writes goes to the transport. Nothing here knows IMAP beyond that.
- Idle timeout (RFC 3501 §5.4, ``[limits] imap_idle_timeout``, IDLE included) is a deadline on
  each read from the client; the client is then told ``* BYE`` and disconnected.
- Before login a client has ``[limits] imap_login_timeout`` seconds in all (a trickle of one
  octet at a time does not extend it) and may be silent for ``imap_preauth_idle_timeout``.
- Connection caps (``[limits] imap_connections``, ``imap_connections_per_address``,
  ``imap_connections_before_login``): a client over one is greeted ``* BYE [UNAVAILABLE]``
  (RFC 3501 §7.1.5, RFC 5530) and disconnected before anything is read from it. On ``imaps``
  the TLS handshake comes after that count (a stalled handshake holds a pre-login slot, for
  ``TLS_HANDSHAKE_SECONDS`` at most); a client over a cap there is closed without a handshake.
- On shutdown the listeners stop accepting; a session waiting for its client (or in IDLE) is
  interrupted at once, one running a command finishes it; each then gets ``* BYE`` and is
  closed. Sessions still running after ``DRAIN_SECONDS`` are cancelled.
- COMPRESS=DEFLATE (RFC 4978): after the tagged OK the connection's octets are raw DEFLATE
  both ways. Output is compressed as written and sync-flushed once per turn of the loop (and
  before every drain), so a burst of responses costs one flush. Input is inflated at most
  ``READ_CHUNK`` octets at a time, only when the parser needs more: a small "bomb" cannot
  make the server hold more than the parser's own limits allow.
- One log line per session (id, listener, client address, TLS, user, client ID, commands,
  octets, duration, why it ended); never a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import ssl
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ..proxylisten import ProxyListener, Trusted, Turns
from ..watchdog import activity
from .cache import FolderSnapshots, RenderCache
from .grammar import NEED_DATA, Command, CommandParser, Event
from .session import Limits, Registry, Services, Session
from .states import SessionEnd

log = logging.getLogger("postroom.imap")

READ_CHUNK = 64 << 10
YIELD_EVERY = 32  # commands run from one read (pipelined) before the loop is given to other sessions
TLS_HANDSHAKE_SECONDS = 30.0
DRAIN_SECONDS = 15.0
BACKLOG = 1024
# RFC 4978 §4: the window sizes are ours to choose for what we send; 8 KiB of window and a
# small memory level keep a compressed connection near 40 KiB (phones hold many of them).
# Inflating must accept any window the client uses (up to 32 KiB).
DEFLATE_WBITS = -13
DEFLATE_MEMLEVEL = 6
INFLATE_WBITS = -15
WRITE_HIGH_WATER = 256 << 10  # octets buffered before a drain waits for the client
REFUSAL_LOG_SECONDS = 10.0  # connections refused over a cap are logged at most this often


@dataclass(frozen=True)
class Caps:
    """Connection caps and pre-login deadlines (``[limits] imap_*``; the defaults are the config's)."""

    connections: int = 5000
    per_address: int = 1000
    before_login: int = 1000
    login_timeout: float = 60.0  # from connecting to logged in, whatever the client sends meanwhile
    preauth_idle_timeout: float = 30.0  # RFC 3501 §5.4's 30 minutes are for logged-in clients

    @classmethod
    def from_config(cls, cfg) -> Caps:
        return cls(int(cfg.get("limits", "imap_connections")), int(cfg.get("limits", "imap_connections_per_address")),
                   int(cfg.get("limits", "imap_connections_before_login")),
                   float(cfg.get("limits", "imap_login_timeout")),
                   float(cfg.get("limits", "imap_preauth_idle_timeout")))


def address_key(ip: str | None) -> str:
    """What a per-address cap counts: the IPv4 address, or the IPv6 /64 (one site's many addresses)."""
    if not ip:
        return "-"
    with contextlib.suppress(ValueError):
        addr = ipaddress.ip_address(ip)
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.ipv4_mapped is not None:
                return str(addr.ipv4_mapped)
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(addr)
    return ip


class Connection:
    """One client connection; implements the session's ``Wire``."""

    def __init__(self, services: Services, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 listener: str, tls: bool, tls_context: ssl.SSLContext | None, caps: Caps = Caps(),
                 client: tuple[str, int] | None = None) -> None:
        """``client``: the address a trusted balancer's PROXY header named (mailserver/proxylisten.py)."""
        self.services = services
        self.reader, self.writer = reader, writer
        self.listener = listener
        self.tls = tls
        self.tls_context = tls_context
        peer = client or writer.get_extra_info("peername")
        self.peer_ip: str | None = peer[0] if isinstance(peer, tuple) else None
        limits = services.limits
        self.idle_timeout = min(limits.idle_timeout, caps.preauth_idle_timeout)  # the session raises it at login
        self.login_deadline: float | None = time.monotonic() + caps.login_timeout  # None once logged in
        self.parser = CommandParser(max_line=limits.max_line)
        self._limit_writes()
        self.bytes_in = self.bytes_out = 0
        self.stopping = False
        self.task: asyncio.Task | None = None
        self.session_id = secrets.token_hex(4)
        self.on_login: Callable[[Connection], None] | None = None  # the service's pre-login count
        self.compressed = False
        self._deflate: zlib._Compress | None = None
        self._inflate: zlib._Decompress | None = None
        self._flush_scheduled = False
        self._waiting = 0
        self._buffered_events = 0  # events taken from the parser since the last wait for the socket

    def _limit_writes(self) -> None:
        transport = self.writer.transport
        if transport is not None:
            transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    async def handshake(self) -> None:
        """Implicit TLS (``imaps``): the handshake, done once the connection is counted against the caps."""
        with self.interruptible():
            await self._upgrade()
        self._limit_writes()

    async def _upgrade(self) -> None:
        try:
            await self.writer.start_tls(self.tls_context, ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS)
        except (ssl.SSLError, ConnectionError, OSError, TimeoutError) as exc:
            raise SessionEnd(f"TLS handshake failed: {exc.__class__.__name__}") from None

    # --- Wire ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._deflate is not None:
            data = self._deflate.compress(data)
            self._schedule_flush()
            if not data:
                return
        self.bytes_out += len(data)
        self.writer.write(data)

    def writelines(self, data) -> None:
        if self._deflate is not None:
            for chunk in data:
                self.write(chunk)
            return
        data = list(data)
        if data:
            self.bytes_out += sum(map(len, data))
            self.writer.writelines(data)

    async def drain(self) -> None:
        self._flush()
        await self.writer.drain()

    # --- COMPRESS=DEFLATE (RFC 4978) ---------------------------------------------------------

    async def start_compress(self, reply: bytes) -> None:
        """Write ``reply`` (the tagged OK) plainly, then compress both directions from here on."""
        self.write(reply)
        await self.drain()
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, DEFLATE_WBITS, DEFLATE_MEMLEVEL)
        self._inflate = zlib.decompressobj(INFLATE_WBITS)
        self.compressed = True
        pending = self.parser.take_buffered()  # sent after COMPRESS: already compressed
        if pending:
            self._feed_compressed(pending)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._deflate is None or self.writer.is_closing():
            return
        tail = self._deflate.flush(zlib.Z_SYNC_FLUSH)
        if tail:
            self.bytes_out += len(tail)
            self.writer.write(tail)

    def _feed_compressed(self, data: bytes) -> None:
        """Inflate at most READ_CHUNK octets into the parser; the rest waits in the inflater."""
        inflate = self._inflate
        assert inflate is not None
        try:
            out = inflate.decompress(inflate.unconsumed_tail + data, READ_CHUNK)
        except zlib.error:
            raise SessionEnd("corrupt compressed data", "Compressed data is corrupt") from None
        if inflate.eof:  # the client ended the DEFLATE stream: nothing more may follow
            raise SessionEnd("compressed stream ended", "Compressed stream ended")
        if out:
            self.parser.receive_data(out)

    async def next_event(self) -> Event:
        parser = self.parser
        while True:
            event = parser.next_event()
            if event is not NEED_DATA:
                self._buffered_events += 1
                if self._buffered_events >= YIELD_EVERY:  # pipelined commands: let other sessions run
                    self._buffered_events = 0
                    await asyncio.sleep(0)
                return event  # type: ignore[return-value]
            if self._inflate is not None and self._inflate.unconsumed_tail:
                self._feed_compressed(b"")  # inflated input the parser has not seen yet
                continue
            self._flush()  # the client may be waiting for what we wrote before it sends more
            timeout, why = self.idle_timeout, ("idle timeout", "Autologout; idle for too long")
            if self.login_deadline is not None:
                left = self.login_deadline - time.monotonic()
                if left < timeout:
                    timeout, why = left, ("no login in time", "Autologout; log in sooner")
            with self.interruptible():
                try:
                    async with asyncio.timeout(max(timeout, 0)):
                        data = await self.reader.read(READ_CHUNK)
                except TimeoutError:
                    raise SessionEnd(*why) from None
            self.bytes_in += len(data)
            self._buffered_events = 0
            if data and self._inflate is not None:
                self._feed_compressed(data)
            else:
                parser.receive_data(data)

    async def start_tls(self, reply: bytes) -> None:
        """RFC 3501 §6.2.1: write ``reply`` (the tagged OK), upgrade in place, then parse afresh.

        Nothing read before the handshake survives it (CVE-2011-0411): reading stops before the
        OK is written, then whatever the parser *and* the StreamReader hold (a command pipelined
        behind STARTTLS, perhaps injected by a man in the middle) is discarded and logged.
        """
        transport = self.writer.transport
        transport.pause_reading()  # the client's ClientHello waits in the socket for the TLS layer
        self.write(reply)
        reader = self.reader
        dropped = self.parser.buffered + len(reader._buffer)  # type: ignore[attr-defined]
        reader._buffer.clear()  # type: ignore[attr-defined]
        reader._paused = False  # type: ignore[attr-defined]  # loop.start_tls resumes reading itself
        self.parser = CommandParser(self.parser.max_line, self.parser.max_literal, utf8_names=self.parser.utf8_names)
        if dropped:
            log.warning("imap session=%s ip=%s: discarded %d octets sent behind STARTTLS", self.session_id,
                        self.peer_ip, dropped)
        await self._upgrade()
        self._limit_writes()
        self.tls = True

    @contextlib.contextmanager
    def interruptible(self):
        """Mark the connection's own task as waiting for the client, so shutdown may cancel it here."""
        mine = asyncio.current_task() is self.task
        if mine:
            self._waiting += 1
        try:
            yield
        finally:
            if mine:
                self._waiting -= 1

    # --- life cycle --------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.stopping = True
        if self._waiting and self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        self.task = asyncio.current_task()
        sid = self.session_id
        session = Session(self.services, self, session_id=sid)
        started = time.monotonic()
        reason = "closed"
        bye: str | None = None
        try:
            self.write(session.greeting())
            await self.drain()
            idle_name = f"imap session={sid}"
            with activity(idle_name):
                while not self.stopping:
                    event = await self.next_event()
                    what = event.command.name if isinstance(event, Command) else type(event).__name__
                    with activity(f"{idle_name} command={what}"):  # named for the watchdog; no arguments
                        await session.handle(event)
                    if self.login_deadline is not None and session.user:
                        self.login_deadline = None
                        if self.on_login is not None:
                            self.on_login(self)
            reason, bye = "shutdown", "Server shutting down"
        except SessionEnd as exc:
            reason, bye = exc.reason, exc.bye
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            reason, bye = "shutdown", "Server shutting down"
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            reason = f"connection error ({exc.__class__.__name__})"
        except Exception:
            log.exception("imap session=%s: unexpected error", sid)
            reason, bye = "internal error", "Internal server error"
        finally:
            session.close()
            await self._finish(bye)
            log.info("imap session=%s listener=%s ip=%s tls=%s user=%s client=%r commands=%d in=%d out=%d "
                     "secs=%.1f end=%s", sid, self.listener, self.peer_ip, "yes" if self.tls else "no",
                     session.user or "-", session.client_id, session.commands, self.bytes_in, self.bytes_out,
                     time.monotonic() - started, reason)

    async def refuse(self, text: str) -> None:
        """Greet with BYE and close (RFC 3501 §7.1.5): the server cannot take this client now."""
        await self._finish(f"[UNAVAILABLE] {text}")

    async def _finish(self, bye: str | None) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):  # the client may be gone already
            if bye and not self.writer.is_closing():
                self.write(b"* BYE " + bye.encode("ascii", "replace") + b"\r\n")
                async with asyncio.timeout(5):
                    await self.drain()
            self._flush()  # compressed output still in the compressor (LOGOUT's BYE)
        self.writer.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(5):
                await self.writer.wait_closed()


class ImapService:
    """The IMAP listeners of one server process (a Service for the composition root)."""

    name = "imap"

    def __init__(self, services: Services, tls_context: ssl.SSLContext | None, caps: Caps = Caps(),
                 proxy_trusted: Trusted | None = None) -> None:
        self.services = services
        self.proxy_trusted = proxy_trusted or Trusted([])
        self.tls_context = tls_context
        self.caps = caps
        self.per_address: dict[str, int] = {}
        self.before_login: set[Connection] = set()
        self._refused, self._refusal_logged = 0, -REFUSAL_LOG_SECONDS
        self.servers: list[asyncio.Server | ProxyListener] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        self.connections: set[Connection] = set()
        self._tasks: set[asyncio.Task] = set()

    async def listen(self, name: str, host: str, port: int, *, implicit_tls: bool,
                     sock: socket.socket | None = None, turns: Turns | None = None) -> None:
        """Accept on host:port, or on `sock` when a supervisor bound it (mailserver.workers), taking ``turns``."""
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         client: tuple[str, int] | None = None) -> None:
            conn = Connection(self.services, reader, writer, listener=name, tls=implicit_tls,
                              tls_context=self.tls_context, caps=self.caps, client=client)
            where = address_key(conn.peer_ip)
            over = self._over_cap(where)
            if over is not None:
                self._log_refusal(conn.peer_ip, over)
                if implicit_tls:  # no TLS yet, and no handshake spent on it: just close
                    writer.close()
                else:
                    await conn.refuse("Too many connections, try again later")
                return
            self.connections.add(conn)
            self.before_login.add(conn)
            conn.on_login = self.before_login.discard
            self.per_address[where] = self.per_address.get(where, 0) + 1
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                if implicit_tls:  # a handshake in progress counts as a connection before login
                    try:
                        await conn.handshake()
                    except SessionEnd as exc:
                        log.info("imap listener=%s ip=%s: %s", name, conn.peer_ip, exc.reason)
                        writer.close()
                        return
                await conn.run()
            finally:
                self.connections.discard(conn)
                self.before_login.discard(conn)
                left = self.per_address.pop(where, 1) - 1
                if left:
                    self.per_address[where] = left
                if task is not None:
                    self._tasks.discard(task)

        server: asyncio.Server | ProxyListener
        if self.proxy_trusted or sock is not None:  # a worker takes turns on the shared socket (proxylisten.py)
            async def handoff(sock, client: tuple[str, int]) -> None:
                loop = asyncio.get_running_loop()

                def protocol() -> asyncio.StreamReaderProtocol:
                    reader = asyncio.StreamReader(limit=READ_CHUNK, loop=loop)
                    return asyncio.StreamReaderProtocol(
                        reader, lambda r, w: accept(r, w, client), loop=loop)
                await loop.connect_accepted_socket(protocol, sock)
            server = await ProxyListener.bind(f"imap {name}", host, port, self.proxy_trusted, handoff,
                                              backlog=BACKLOG, sock=sock, turns=turns)
        else:
            server = await asyncio.start_server(accept, host=host, port=port, backlog=BACKLOG, limit=READ_CHUNK)
        self.servers.append(server)
        sock = server.sockets[0].getsockname()
        self.addresses[name] = (sock[0], sock[1])
        log.info("imap listening: %s on %s:%d%s%s", name, sock[0], sock[1], " (TLS)" if implicit_tls else "",
                 " (PROXY protocol)" if self.proxy_trusted else "")

    def turns(self, ctx, name: str) -> Turns | None:
        """A worker's turns on the shared socket of listener `name`, balanced by this service's connections."""
        make = ctx.extras.get("turns")  # set with the sockets, in a worker
        return make(f"imap {name}", lambda: len(self.connections)) if make else None

    def _log_refusal(self, ip: str | None, why: str) -> None:
        """One line per REFUSAL_LOG_SECONDS at most, with how many were refused (a flood must not flood the log)."""
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_SECONDS:
            log.warning("imap: refused %d connection(s), the last from %s: %s", self._refused, ip, why)
            self._refused, self._refusal_logged = 0, now

    def _over_cap(self, where: str) -> str | None:
        caps = self.caps
        if len(self.connections) >= caps.connections:
            return f"{caps.connections} connections in total"
        if self.per_address.get(where, 0) >= caps.per_address:
            return f"{caps.per_address} connections from the address"
        if len(self.before_login) >= caps.before_login:
            return f"{caps.before_login} connections not logged in"
        return None

    async def close(self) -> None:
        """Stop accepting; say BYE to every session (after its current command); close."""
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.shutdown()
        tasks = set(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)


def build_services(ctx) -> Services:
    """Services from the composition root's Context (config, mailboxes, authenticator, TLS)."""
    cfg = ctx.config
    limits = Limits(max_message=int(cfg.get("limits", "max_message_size")),
                    idle_timeout=float(cfg.get("limits", "imap_idle_timeout")),
                    connections_per_account=int(cfg.get("limits", "imap_connections_per_account")),
                    plaintext_on_loopback=bool(cfg.get("tls", "allow_plaintext_auth_on_loopback")))
    store = ctx.mailboxes.store
    return Services(store, ctx.mailboxes.directory, ctx.auth, limits, RenderCache(store), FolderSnapshots(store),
                    registry=Registry(limits.connections_per_account), tls_available=ctx.tls_context is not None)


async def start(ctx) -> list[ImapService]:
    """Start the ``imap`` and ``imaps`` listeners named in ``[listen]`` (empty disables one)."""
    service = ImapService(build_services(ctx), ctx.tls_context, Caps.from_config(ctx.config),
                          Trusted(ctx.config.get("listen", "proxy_trusted")))
    sockets = ctx.extras.get("sockets")  # a supervisor's worker serves the sockets it was given, only those
    try:
        plain = ctx.config.listen("imap")
        if plain is not None and (sockets is None or "imap" in sockets):
            await service.listen("imap", *plain, implicit_tls=False, sock=(sockets or {}).get("imap"),
                                 turns=service.turns(ctx, "imap"))
        implicit = ctx.config.listen("imaps")
        if implicit is not None and (sockets is None or "imaps" in sockets):
            if ctx.tls_context is None:
                log.warning("imaps: no TLS certificate, listener not started")
            else:
                await service.listen("imaps", *implicit, implicit_tls=True, sock=(sockets or {}).get("imaps"),
                                     turns=service.turns(ctx, "imaps"))
    except BaseException:
        await service.close()
        raise
    ctx.extras["imap"] = service  # the webmail's client set-up pages name its bound ports
    return [service]
