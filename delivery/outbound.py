"""The outbound SMTP client (aiosmtplib): one transaction per message and destination domain, a result per recipient.

Implementation notes
- The dialer (TCP connect) and the route/MX look-up are passed in; tests
  route through loopback proxies and never reach the internet.
- TLS per route (RFC 3207): `required` fails the attempt (temporarily) when
  STARTTLS is not offered or fails; `opportunistic` uses it when offered;
  `none` never. Certificates are not checked against public CAs: district
  links use self-signed certificates made by `postroom init`, and
  opportunistic TLS is unauthenticated by nature (RFC 7435 §1.3).
- Hosts are tried in order until one answers the greeting; once a server has
  answered MAIL, its replies are final for this attempt.
- Results follow RFC 5321 §4.2.1: 2yz delivered, 4yz retry, 5yz bounce;
  network trouble is temporary (RFC 3463 X.4.1 no answer, X.4.2 dropped).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib

from .routes import RouteError, Routes, Target
from .schedule import Outcome, classify

log = logging.getLogger("postroom.outbound")

DEFAULT_TIMEOUT = 60.0  # per command; RFC 5321 §4.5.3.2 allows longer, our peers are near
_ENHANCED = re.compile(r"\A([245]\.\d{1,3}\.\d{1,3})\b")

Dialer = Callable[[str, int, float], Awaitable[socket.socket]]


async def tcp_dialer(host: str, port: int, timeout: float) -> socket.socket:
    """Connect to the first address of `host` that answers."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: Exception = OSError(f"no address for {host}")
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
            return sock
        except (OSError, asyncio.TimeoutError) as exc:
            sock.close()
            last = exc
    raise last


@dataclass(frozen=True)
class RcptResult:
    rcpt: str
    outcome: Outcome  # ok | temp | perm
    status: str  # RFC 3463 code, e.g. "5.1.1"
    reply: str  # what the server said (or what went wrong), one line
    host: str | None = None


def _status(code: int, text: str, outcome: Outcome) -> str:
    m = _ENHANCED.match(text.strip())
    if m and m.group(1)[0] == str(code)[0]:
        return m.group(1)
    return {"ok": "2.0.0", "temp": "4.0.0", "perm": "5.0.0"}[outcome]


def _result(rcpt: str, code: int, text: str, host: str) -> RcptResult:
    outcome = classify(code)
    line = " ".join(f"{code} {text}".split())[:500]
    return RcptResult(rcpt, outcome, _status(code, text, outcome), line, host)


def needs_smtputf8(mail_from: str, rcpts: list[str], data: bytes) -> bool:
    """Whether the next hop must offer SMTPUTF8 (RFC 6531 §3.2): a non-ASCII address, or UTF-8 header fields.

    RFC 6532 §3 lets header fields carry raw UTF-8 only in an SMTPUTF8 transaction. Raw 8-bit
    header bytes that are not UTF-8 (legacy GBK mail with no declared charset) are not
    internationalised headers: they go as before, with 8BITMIME. Only the top-level header
    section is read.
    """
    if not all(a.isascii() for a in (mail_from, *rcpts)):
        return True
    end = 0 if data.startswith(b"\r\n") else data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    if head.isascii():
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class _NotAnswered(Exception):
    """This host did not get as far as answering MAIL: try the next one."""

    def __init__(self, why: str, status: str = "4.4.1") -> None:  # RFC 3463 X.4.1: no answer from host
        super().__init__(why)
        self.status = status


class Outbound:
    def __init__(self, routes: Routes, *, hostname: str, dialer: Dialer = tcp_dialer,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.routes = routes
        self.hostname = hostname
        self.dialer = dialer
        self.timeout = timeout
        self._tls = _unverified_context()

    async def send(self, mail_from: str, rcpts: list[str], data: bytes, domain: str) -> tuple[list[RcptResult], str]:
        """Deliver to the recipients of one domain; returns their results and where we tried (for the log)."""
        try:
            targets = await self.routes.targets(domain)
        except RouteError as exc:
            status = "5.1.2" if exc.permanent else "4.4.3"  # RFC 3463 X.1.2 / X.4.3 (routing)
            outcome: Outcome = "perm" if exc.permanent else "temp"
            return [RcptResult(r, outcome, status, str(exc)) for r in rcpts], "-"
        last, status = "no host to try", "4.4.1"
        for target in targets:
            try:
                return await self._via(target, mail_from, rcpts, data), f"{target.via}:{target.host}:{target.port}"
            except _NotAnswered as exc:
                last, status = str(exc), exc.status
        return [RcptResult(r, "temp", status, last) for r in rcpts], targets[-1].via if targets else "-"

    async def _connect(self, target: Target) -> aiosmtplib.SMTP:
        where = f"{target.host}:{target.port}"
        try:
            sock = await self.dialer(target.host, target.port, self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise _NotAnswered(f"cannot connect to {where}: {exc.__class__.__name__} {exc}") from None
        client = aiosmtplib.SMTP(sock=sock, local_hostname=self.hostname, timeout=self.timeout, start_tls=False)
        try:
            await client.connect()
            await client.ehlo()
            if target.tls != "none" and client.supports_extension("starttls"):
                await client.starttls(server_hostname=target.host, tls_context=self._tls)
                # RFC 3207 §4.2: what the server said before TLS is forgotten; ask again, or
                # SIZE, 8BITMIME and SMTPUTF8 would look unsupported for the whole session.
                await client.ehlo()
            elif target.tls == "required":
                # RFC 3463 X.7.4 "Security features not supported" (Postfix: "TLS is required, but was
                # not offered by host"), not X.4.1: the host answered, it lacks what the route demands.
                raise _NotAnswered(f"{where} does not offer STARTTLS and the route requires TLS", "4.7.4")
            if target.auth_user:
                await client.login(target.auth_user, target.auth_secret or "")
        except _NotAnswered:
            client.close()
            raise
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise _NotAnswered(f"{where} refused our login: {exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            client.close()
            raise _NotAnswered(f"{where}: {exc.__class__.__name__} {exc}") from None
        return client

    async def _via(self, target: Target, mail_from: str, rcpts: list[str], data: bytes) -> list[RcptResult]:
        client = await self._connect(target)
        host = target.host
        results: dict[str, RcptResult] = {}
        try:
            utf8 = needs_smtputf8(mail_from, rcpts, data)
            opts = []
            if client.supports_extension("size"):
                opts.append(f"SIZE={len(data)}")  # RFC 1870 §6
            if not data.isascii() and client.supports_extension("8bitmime"):
                opts.append("BODY=8BITMIME")  # RFC 6152 §2
            if utf8:
                if not client.supports_extension("smtputf8"):
                    # RFC 6531 §3.2: no downgrade; the message cannot go this way.
                    return [RcptResult(r, "perm", "5.6.7", "server does not support SMTPUTF8", host) for r in rcpts]
                opts.append("SMTPUTF8")
            enc = "ascii" if all(a.isascii() for a in (mail_from, *rcpts)) else "utf-8"
            try:
                await client.mail(mail_from, options=opts, encoding=enc)
            except aiosmtplib.SMTPResponseException as exc:
                return [_result(r, exc.code, exc.message, host) for r in rcpts]
            accepted = []
            for r in rcpts:
                try:
                    await client.rcpt(r, encoding=enc)
                    accepted.append(r)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    results[r] = _result(r, exc.code, exc.message, host)
            if accepted:
                try:
                    resp = await client.data(data)
                    for r in accepted:
                        results[r] = _result(r, resp.code, resp.message, host)
                except aiosmtplib.SMTPResponseException as exc:
                    for r in accepted:
                        results[r] = _result(r, exc.code, exc.message, host)
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                pass
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError, asyncio.TimeoutError,
                aiosmtplib.SMTPException) as exc:
            why = f"connection to {host}:{target.port} lost: {exc.__class__.__name__} {exc}"
            for r in rcpts:
                if r not in results:
                    results[r] = RcptResult(r, "temp", "4.4.2", why, host)
        finally:
            client.close()
        return [results[r] for r in rcpts]
