"""A fake internet on loopback for outbound tests: an MX resolver and a dialer over recording aiosmtpd peers.

The resolver and the dialer are the two hooks `delivery.service.build` takes
(design.md: "resolver and dialer passed in"). Names map to MX records and to
"A records" that are loopback addresses with ephemeral ports, so the queue
worker's port-25 connections reach peers started by the test, never the net.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from delivery.routes import RouteError
from mailserver import tls


@dataclass
class Received:
    mail_from: str
    rcpts: list[str]
    data: bytes
    mail_options: list[str]
    tls: bool
    login: str | None


class _Recorder:
    """aiosmtpd handler: keeps every message and every MAIL command it saw."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.peer.mail_commands.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.peer.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                                           list(envelope.mail_options), session.ssl is not None, login))
        self.peer.arrived.set()
        return "250 2.0.0 OK stored"


@dataclass
class Peer:
    """One SMTP server on a loopback address: STARTTLS, SMTPUTF8 and AUTH as asked."""

    ip: str = "127.0.0.1"
    starttls: bool = True
    smtputf8: bool = True
    auth: tuple[str, str] | None = None  # (user, password) required before MAIL
    cert_dir: Path | None = None
    received: list[Received] = field(default_factory=list)
    mail_commands: list[str] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.base_events.Server | None = None

    async def start(self) -> Peer:
        ctx = None
        if self.starttls:
            assert self.cert_dir is not None, "a STARTTLS peer needs a directory for its certificate"
            cert, key = self.cert_dir / f"{self.ip}.crt", self.cert_dir / f"{self.ip}.key"
            if not cert.exists():
                tls.make_self_signed(cert, key, "peer.test")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
        handler = _Recorder(self)

        def factory() -> SMTP:
            return SMTP(handler, enable_SMTPUTF8=self.smtputf8, tls_context=ctx, hostname="peer.test",
                        auth_required=self.auth is not None, authenticator=self._authenticate if self.auth else None)

        self._server = await asyncio.get_running_loop().create_server(factory, self.ip, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _authenticate(self, server, session, envelope, mechanism, data) -> AuthResult:
        user, password = data.login.decode(), data.password.decode()
        self.logins.append((user, password))
        if (user, password) == self.auth:
            return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


class Refuser:
    """A host that answers every connection with a 554 greeting and hangs up (RFC 5321 §3.1)."""

    def __init__(self, ip: str = "127.0.0.1") -> None:
        self.ip, self.port, self.connections = ip, 0, 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> Refuser:
        async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.write(b"554 5.3.2 no service here\r\n")
            await writer.drain()
            writer.close()

        self._server = await asyncio.start_server(greet, self.ip, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class FakeNet:
    """MX records and A records (name -> loopback ip:port); `dialed` lists every connection attempt in order."""

    def __init__(self) -> None:
        self.mx_records: dict[str, list[tuple[int, str]]] = {}
        self.hosts: dict[str, tuple[str, int]] = {}
        self.nxdomain: set[str] = set()
        self.dialed: list[str] = []
        self.lookups: list[str] = []

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        self.lookups.append(domain)
        if domain in self.nxdomain:
            raise RouteError(f"domain {domain} does not exist", permanent=True)
        return list(self.mx_records.get(domain, []))

    async def dial(self, host: str, port: int, timeout: float) -> socket.socket:
        self.dialed.append(host)
        if host in self.hosts:
            ip, port = self.hosts[host]
        elif host.startswith("127."):
            ip = host
        else:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: name not known")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (ip, port)), timeout)
        except BaseException:
            sock.close()
            raise
        return sock
