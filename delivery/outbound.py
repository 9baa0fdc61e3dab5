"""The outbound SMTP client: sessions set up by aiosmtplib, several messages per connection (pipelined), a result per recipient.

Implementation notes
- `send_batch` takes a link's messages in order (urgent first) and sends them over up to
  LINK_CONNECTIONS connections to the first target that answers, each connection taking the
  next message when it is done with one (delivery.smtpsession: PIPELINING, RFC 2920). A
  connection idle after a batch is kept up to POOL_IDLE_SECONDS for the next round; measured
  over a 150 ms one-way link, 200 messages of 8 KB: see benchmarks/wan_bench.py.
- A target that cannot be reached at the connection level (no TCP connection, no greeting,
  dropped during set-up) is reported in `Batch.down`; the worker marks the link down
  (delivery.links). A refusal it answered with (554 greeting, TLS required but not offered,
  AUTH refused) is not a link failure. A connection lost in the middle of a batch is opened
  again (MAX_RECONNECTS); a message none of whose commands was answered goes on the next one.
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
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib

from .routes import RouteError, Routes, Target
from .schedule import Outcome, classify
from .smtpsession import Job, Session, SessionLost
from .smtpsession import Outcome as SessionOutcome

log = logging.getLogger("postroom.outbound")

DEFAULT_TIMEOUT = 60.0  # per command; RFC 5321 §4.5.3.2 allows longer, our peers are near
LINK_CONNECTIONS = 8  # connections to one link at once, each sending messages in turn (a WAN's round trips)
POOL_IDLE_SECONDS = 10.0  # a session idle this long is not reused (closed when next looked at)
MAX_RECONNECTS = 2  # per lane and batch: a connection lost mid-batch is opened again this often
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
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, addr)
            return sock
        except (OSError, TimeoutError) as exc:
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


def route_failure(exc: RouteError, rcpts: list[str]) -> list[RcptResult]:
    """No host to try: RFC 3463 X.1.2 (permanent) or X.4.3 (routing, for now)."""
    status = "5.1.2" if exc.permanent else "4.4.3"
    outcome: Outcome = "perm" if exc.permanent else "temp"
    return [RcptResult(r, outcome, status, str(exc)) for r in rcpts]


def _unverified_context() -> ssl.SSLContext:
    # create_default_context() would also load the system's CA certificates (30-60 ms, per Outbound),
    # which a context that verifies nothing never reads; its other defaults are PROTOCOL_TLS_CLIENT's.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class _NotAnswered(Exception):
    """This host did not get as far as answering MAIL: try the next one.

    `link`: it failed at the connection level (no connection, no greeting, dropped during set-up),
    so the link is marked down and probed (delivery.links); a refusal it answered with is not.
    """

    def __init__(self, why: str, status: str = "4.4.1", *, link: bool = False) -> None:  # RFC 3463 X.4.1
        super().__init__(why)
        self.status = status
        self.link = link


class Outbound:
    def __init__(self, routes: Routes, *, hostname: str, dialer: Dialer = tcp_dialer,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.routes = routes
        self.hostname = hostname
        self.dialer = dialer
        self.timeout = timeout
        self._tls = _unverified_context()
        self._idle: dict[str, list[tuple[float, Session]]] = {}  # link -> idle sessions (monotonic time put back)

    async def _connect(self, target: Target) -> aiosmtplib.SMTP:
        where = f"{target.host}:{target.port}"
        try:
            sock = await self.dialer(target.host, target.port, self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise _NotAnswered(f"cannot connect to {where}: {exc.__class__.__name__} {exc}", link=True) from None
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
        except (aiosmtplib.SMTPResponseException) as exc:
            client.close()
            raise _NotAnswered(f"{where}: {exc.__class__.__name__} {exc}") from None  # it answered: a refusal
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            client.close()
            raise _NotAnswered(f"{where}: {exc.__class__.__name__} {exc}", link=True) from None
        return client

    # --- sessions: one connection, several messages (issue 12 point 4) -------------------------

    async def open(self, target: Target) -> Session:
        """A set-up session to `target`, from the idle pool when one is fresh, else a new connection (_NotAnswered)."""
        key = link_key(target)
        idle = self._idle.get(key, [])
        now = time.monotonic()
        while idle:
            since, session = idle.pop()
            if session.alive and now - since < POOL_IDLE_SECONDS:
                return session
            session.close()
        client = await self._connect(target)
        transport = client.transport
        if transport is None:
            client.close()
            raise _NotAnswered(f"{key}: connection lost during set-up", link=True)
        return Session(transport, dict(client.esmtp_extensions), timeout=self.timeout, where=key, keep=client)

    def put_back(self, target: Target, session: Session) -> None:
        """Keep a healthy session for the next round (at most LINK_CONNECTIONS per link), else close it."""
        idle = self._idle.setdefault(link_key(target), [])
        if session.alive and len(idle) < LINK_CONNECTIONS:
            idle.append((time.monotonic(), session))
        else:
            session.close()

    async def close(self) -> None:
        for idle in self._idle.values():
            await asyncio.gather(*(s.quit() for _, s in idle), return_exceptions=True)
        self._idle.clear()

    async def probe(self, target: Target, *, keep: bool = True) -> str | None:
        """Open a session to a link that was down; None when it answered.

        With `keep` the session stays in the pool for the mail the probe releases; without (a target
        known only by its host and port, so without the route's TLS and AUTH settings) it is closed.
        """
        try:
            session = await self.open(target)
        except _NotAnswered as exc:
            return str(exc)
        if keep:
            self.put_back(target, session)
        else:
            await session.quit()
        return None

    async def send_batch(self, targets: list[Target], jobs: list[Request], *, lanes: int = LINK_CONNECTIONS
                         ) -> Batch:
        """Send `jobs` (in order, urgent first) to the first target that answers, over up to `lanes` connections.

        A target that cannot be reached at the connection level is named in `Batch.down`; the
        jobs then go to the next target, and get a temporary result when none answers.
        """
        batch = Batch([[] for _ in jobs], "-", {})
        last, status = "no host to try", "4.4.1"
        for target in targets:
            try:
                first = await self.open(target)
            except _NotAnswered as exc:
                last, status = str(exc), exc.status
                if exc.link:
                    batch.down[link_key(target)] = str(exc)
                continue
            batch.via = f"{target.via}:{target.host}:{target.port}"
            await _Lanes(self, target, jobs, batch).run(first, max(1, min(lanes, len(jobs))))
            return batch
        for i, job in enumerate(jobs):
            batch.results[i] = [RcptResult(r, "temp", status, last) for r in job.rcpts]
        batch.via = targets[-1].via if targets else "-"
        return batch


@dataclass(frozen=True)
class Request:
    """One message for some recipients of one domain, as the worker hands it over."""

    mail_from: str
    rcpts: tuple[str, ...]
    data: bytes


@dataclass
class Batch:
    results: list[list[RcptResult]]  # per request, one per recipient
    via: str  # where it went, for the log
    down: dict[str, str]  # links ("host:port") that failed at the connection level, with why


def link_key(target: Target) -> str:
    return f"{target.host}:{target.port}"


def _job(req: Request, session: Session) -> Job | list[RcptResult]:
    """The MAIL parameters this peer needs for the request, or its results when the peer cannot take it."""
    utf8 = needs_smtputf8(req.mail_from, list(req.rcpts), req.data)
    opts = []
    if session.supports("size"):
        opts.append(f"SIZE={len(req.data)}")  # RFC 1870 §6
    if not req.data.isascii() and session.supports("8bitmime"):
        opts.append("BODY=8BITMIME")  # RFC 6152 §2
    if utf8:
        if not session.supports("smtputf8"):
            # RFC 6531 §3.2: no downgrade; the message cannot go this way.
            return [RcptResult(r, "perm", "5.6.7", "server does not support SMTPUTF8", session.where.rpartition(":")[0])
                    for r in req.rcpts]
        opts.append("SMTPUTF8")
    enc = not all(a.isascii() for a in (req.mail_from, *req.rcpts))
    return Job(req.mail_from, req.rcpts, req.data, tuple(opts), enc)


def _results(job: Job, out: SessionOutcome, host: str, why: str) -> list[RcptResult]:
    """RFC 5321 §4.2.1 per recipient; what the connection loss left unanswered is temporary (RFC 3463 X.4.2)."""
    lost = [RcptResult(r, "temp", "4.4.2", why, host) for r in job.rcpts]
    if out.mail is None:
        return lost
    if out.mail.code // 100 != 2:
        return [_result(r, out.mail.code, out.mail.text, host) for r in job.rcpts]
    res = []
    for r, gone in zip(job.rcpts, lost):
        a = (out.rcpts or {}).get(r)
        if a is None:
            res.append(gone)
        elif a.code // 100 != 2:
            res.append(_result(r, a.code, a.text, host))
        elif out.final is None:
            res.append(gone)
        else:
            res.append(_result(r, out.final.code, out.final.text, host))
    return res


class _Lanes:
    """Up to N sessions to one target taking requests from one list in order; a lost one reconnects a few times."""

    def __init__(self, outbound: Outbound, target: Target, reqs: list[Request], batch: Batch) -> None:
        self.out = outbound
        self.target = target
        self.reqs = reqs
        self.batch = batch
        self.todo: deque[int] = deque(range(len(reqs)))
        self.index: dict[int, int] = {}  # id(Job) -> request index

    def take(self, session: Session) -> Job | None:
        while self.todo:
            i = self.todo.popleft()
            job = _job(self.reqs[i], session)
            if isinstance(job, list):
                self.batch.results[i] = job
                continue
            self.index[id(job)] = i
            return job
        return None

    def done(self, session: Session, job: Job, out: SessionOutcome) -> None:
        i = self.index.pop(id(job))
        if out.mail is None and not session.alive:
            self.todo.appendleft(i)  # nothing of it reached the peer: another connection takes it
            return
        why = f"connection to {session.where} lost: {session.lost_why}"
        self.batch.results[i] = _results(job, out, self.target.host, why)

    async def run(self, first: Session, lanes: int) -> None:
        await asyncio.gather(self._lane(first), *(self._lane(None) for _ in range(lanes - 1)))
        why = f"connection to {link_key(self.target)} lost"
        while self.todo:
            i = self.todo.popleft()
            self.batch.results[i] = [RcptResult(r, "temp", "4.4.2", why, self.target.host) for r in self.reqs[i].rcpts]

    async def _lane(self, session: Session | None) -> None:
        tries = 0
        while self.todo and tries <= MAX_RECONNECTS:
            if session is None:
                try:
                    session = await self.out.open(self.target)
                except _NotAnswered as exc:
                    if exc.link and tries:  # this lane's link broke again: the others go on
                        self.batch.down.setdefault(link_key(self.target), str(exc))
                    return
            try:
                await session.run(lambda s=session: self.take(s), lambda j, o, s=session: self.done(s, j, o))
            except SessionLost:
                session.close()
                session = None
                tries += 1
                continue
            break
        if session is not None:
            self.out.put_back(self.target, session)
