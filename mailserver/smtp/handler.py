"""The aiosmtpd adapter (the only module that imports aiosmtpd): SMTP commands in, door policy and delivery calls out.

Implementation notes (invariants):
- We subclass aiosmtpd's SMTP for its connection loop, STARTTLS and
  timeouts, and implement the commands ourselves: aiosmtpd strips the angle
  brackets before its hooks see a path, answers without enhanced status
  codes, and its AUTH callback is synchronous while our password check is not.
- Every reply is a `delivery.envelope.Reply`; `str(reply)` is written.
  Unexpected errors become one generic 451 4.3.0 (details go to the log).
- The reply to DATA is sent only after submit()/accept() returned, i.e. after
  the local copies and queue rows are committed (group commit; no lock held
  here, so sessions never wait for each other except to share a disk sync).
- AUTH is offered and accepted only over TLS, unless the client is on
  loopback and `[tls] allow_plaintext_auth_on_loopback` is set. Submission
  listeners are built with auth_required=True, explicitly (aiosmtpd's
  default is False, aiosmtpd issue 374).
- After STARTTLS everything learnt before it is forgotten (RFC 3207 §4.2).
- Bounded per connection and in total: connections are capped in total and
  per client address (421 4.7.0 and close); DATA is kept in memory up to
  spool.IN_MEMORY and in a temporary file beyond, the size limit is applied
  while it streams, and the whole transfer must end within `data_timeout`
  seconds of the DATA command (RFC 5321 §4.5.3.2; 421 4.4.2 and close).
  At most LARGE_DELIVERIES spooled messages are read back into memory at once.
- One log line per transaction (MAIL ... end), with the queue id; never a password.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import contextlib
import logging
import ssl
import time
from base64 import b64decode
from dataclasses import dataclass, field

from aiosmtpd.smtp import MISSING, SMTP

from delivery.accept import Acceptor, Inbound
from delivery.envelope import (
    APP_PASSWORD_REQUIRED, AUTH_FAILED, AUTH_OK, AUTH_REQUIRED, AUTH_THROTTLED, BAD_ARGUMENTS, BAD_SEQUENCE,
    DATA_TIMEOUT, ENCRYPTION_REQUIRED, MESSAGE_TOO_BIG, OK, RECIPIENT_OK, SENDER_OK, SHUTTING_DOWN, SYNTAX_ERROR,
    TEMPORARY_FAILURE, TOO_MANY_CONNECTIONS, TOO_MANY_RECIPIENTS, UNKNOWN_MECHANISM, Reply,
)
from delivery.policy import Route, check_forward_path, check_sender, check_unauthenticated_sender
from delivery.queue import new_queue_id
from delivery.received import with_protocol
from delivery.submit import Client, Outcome, Submission, Submitter
from mailboxes.model import Account
from mailboxes.offload import offload

from ..auth import AppPasswordRequired, AuthFailed, Authenticator, AuthThrottled, is_loopback
from ..logsafe import logfield
from .commands import (
    ALREADY_AUTH, ALREADY_TLS, NO_VALID_RECIPIENTS, NOT_IMPLEMENTED, VRFY_REPLY, Transaction, parse_mail, parse_rcpt,
    plain_credentials,
)
from .spool import DataReader, Spool

log = logging.getLogger("postroom.smtp")

MAX_COMMAND_LINE = 2048  # RFC 5321 §4.5.3.1.4 is 512, plus extension parameters; be lenient
DATA_CHUNK = 65536
READ_BUFFER = 65536
SESSION_TIMEOUT = 300.0  # RFC 5321 §4.5.3.2.7 asks for at least 5 minutes
DATA_TIMEOUT_SECONDS = 300.0  # RFC 5321 §4.5.3.2.5-6: DATA command to final dot, in total ([limits] smtp_data_timeout)
MAX_CONNECTIONS = 1000  # sessions on all listeners together ([limits] smtp_connections)
MAX_CONNECTIONS_PER_ADDRESS = 100  # sessions from one client address ([limits] smtp_connections_per_address)
MAX_HELD_REPLIES = 64  # pipelined replies held back before they are written and the loop is yielded
LARGE_DELIVERIES = 2  # spooled (large) messages held in memory for delivery at once


@dataclass(frozen=True)
class ListenerKind:
    """How one listener behaves: its name, implicit TLS, whether AUTH is required before MAIL."""

    name: str  # smtp | submission | submissions
    implicit_tls: bool = False
    auth_required: bool = False


@dataclass
class Doors:
    """What every session of one server shares: delivery, auth, limits, and the session registry."""

    submitter: Submitter
    acceptor: Acceptor
    auth: Authenticator
    hostname: str
    tls_context: ssl.SSLContext | None  # for STARTTLS
    max_size: int
    max_recipients: int
    plaintext_auth_on_loopback: bool = False
    max_connections: int = MAX_CONNECTIONS
    max_per_address: int = MAX_CONNECTIONS_PER_ADDRESS
    data_timeout: float = DATA_TIMEOUT_SECONDS
    sessions: set = field(default_factory=set)
    per_address: collections.Counter = field(default_factory=collections.Counter)
    draining: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    large: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(LARGE_DELIVERIES))

    def admit(self, session: "PostroomSMTP") -> bool:
        """Count a new connection in, unless a cap is reached (then the caller answers 421 4.7.0)."""
        if len(self.sessions) >= self.max_connections or self.per_address[session.peer_ip] >= self.max_per_address:
            return False
        self.sessions.add(session)
        self.per_address[session.peer_ip] += 1
        self.idle.clear()
        return True

    def forget(self, session: "PostroomSMTP") -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.per_address[session.peer_ip] -= 1
            if self.per_address[session.peer_ip] <= 0:
                del self.per_address[session.peer_ip]
        if not self.sessions:
            self.idle.set()


class _Hooks:
    """The handler object aiosmtpd wants; our commands are methods of PostroomSMTP, so only errors come here."""

    async def handle_exception(self, error: Exception) -> str:
        log.exception("smtp session error: %s", error.__class__.__name__)
        return str(TEMPORARY_FAILURE)


class PostroomSMTP(SMTP):
    command_size_limit = MAX_COMMAND_LINE
    # aiosmtpd sizes the stream reader by this, which also sets its flow control:
    # at 1001 bytes reading pauses and resumes the socket several times per
    # message. Command lines stay limited by command_size_limits.
    line_length_limit = READ_BUFFER

    def __init__(self, doors: Doors, kind: ListenerKind, client: tuple[str, int] | None = None) -> None:
        """``client``: the address a trusted balancer's PROXY header named (mailserver/proxylisten.py)."""
        super().__init__(
            _Hooks(), data_size_limit=doors.max_size, enable_SMTPUTF8=True, decode_data=False,
            hostname=doors.hostname, ident="Postroom ESMTP",
            tls_context=None if kind.implicit_tls else doors.tls_context,
            timeout=SESSION_TIMEOUT,
            auth_required=kind.auth_required,  # explicit, never aiosmtpd's default (style.md)
            auth_require_tls=True)
        self.doors = doors
        self.kind = kind
        self.account: Account | None = None
        self.txn: Transaction | None = None
        self.busy = False
        self.peer_ip = ""
        self.client = client
        self._held: list[bytes] = []  # replies held back while pipelined commands are buffered
        # aiosmtpd's is a class-level dict that every session grows at each EHLO; ours is fixed.
        self.command_size_limits = collections.defaultdict(lambda: MAX_COMMAND_LINE)

    # --- connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        restarted = self._original_transport is not None  # the TLS layer after STARTTLS
        super().connection_made(transport)
        peer = self.client or transport.get_extra_info("peername")
        self.session.peer = peer  # the client's, also behind a balancer and after STARTTLS
        self.peer_ip = str(peer[0]) if peer else ""
        if restarted:
            self.account, self.txn = None, None  # RFC 3207 §4.2: start over
            return
        if self._handler_coroutine is not None:  # named for the event-loop watchdog (no secrets in it)
            self._handler_coroutine.set_name(f"smtp listener={self.kind.name} ip={self.peer_ip}")
        if self.doors.draining:
            transport.write(f"{SHUTTING_DOWN}\r\n".encode())
            transport.close()
            return
        if not self.doors.admit(self):
            log.warning("smtp listener=%s client=%s refused: too many connections", self.kind.name, self.peer_ip)
            transport.write(f"{TOO_MANY_CONNECTIONS}\r\n".encode())  # RFC 5321 §3.8: 421 and close
            transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        self.doors.forget(self)
        if self.txn is not None:
            self._log_txn(self.txn, "connection lost")
            self.txn = None
        super().connection_lost(error)

    def _ssl_object(self):
        try:
            return self.transport.get_extra_info("ssl_object") if self.transport is not None else None
        except AttributeError:  # the TLS layer is already torn down
            return None

    @property
    def tls_active(self) -> bool:
        return self._ssl_object() is not None

    def _tls_info(self) -> str | None:
        obj = self._ssl_object()
        if obj is None:
            return None
        cipher = obj.cipher()
        return f"version={obj.version()} cipher={cipher[0] if cipher else '?'}"

    def _auth_allowed(self) -> bool:
        return self.tls_active or (self.doors.plaintext_auth_on_loopback and is_loopback(self.peer_ip))

    def shut_if_idle(self) -> bool:
        """Drain: close a session that is between transactions (421, RFC 5321 §3.8)."""
        if self.txn is None and not self.busy and self.transport is not None:
            self.transport.write(f"{SHUTTING_DOWN}\r\n".encode())
            self.transport.close()
            return True
        return False

    async def push(self, status: str | bytes) -> None:
        """Write a reply; while pipelined commands are still buffered, hold it back (RFC 2920 §3.2).

        The replies to a pipelined group then leave in one segment, and nothing
        is ever held while we wait for the client (its input buffer is empty then).
        """
        data = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") if isinstance(status, str) else status
        self._held.append(data + b"\r\n")
        if self._reader._buffer and len(self._held) < MAX_HELD_REPLIES:  # more of this group is already here
            return
        long_group = len(self._held) >= MAX_HELD_REPLIES
        out, self._held = b"".join(self._held), []
        self._writer.write(out)
        await self._writer.drain()
        if long_group:
            # Buffered commands are read without waiting, so a long pipelined group would
            # run to its end in one go: let the other sessions have the loop in between.
            await asyncio.sleep(0)

    async def reply(self, r: Reply | str) -> None:
        await self.push(str(r))

    async def _sequence_ok(self) -> bool:
        if not self.session.host_name:
            await self.reply(BAD_SEQUENCE.with_text("Send EHLO first"))
            return False
        return True

    # --- greeting ------------------------------------------------------------------

    async def smtp_EHLO(self, hostname: str) -> None:
        if not hostname:
            await self.reply(SYNTAX_ERROR.with_text("Syntax: EHLO hostname"))
            return
        self._end_txn("EHLO")
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        caps = [self.hostname, "PIPELINING", f"SIZE {self.doors.max_size}", "8BITMIME", "SMTPUTF8",
                "ENHANCEDSTATUSCODES"]  # RFC 2920, 1870, 6152, 6531, 2034
        if self.tls_context and not self.tls_active:
            caps.append("STARTTLS")  # RFC 3207
        if self._auth_allowed():
            caps.append("AUTH PLAIN LOGIN")  # RFC 4954 §3; PLAIN is RFC 4616
        await self.push("\r\n".join([f"250-{c}" for c in caps[:-1]] + [f"250 {caps[-1]}"]))

    async def smtp_HELO(self, hostname: str) -> None:
        self._end_txn("HELO")
        await super().smtp_HELO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.tls_active:
            await self.reply(ALREADY_TLS)
            return
        if self.txn is not None:
            await self.reply(BAD_SEQUENCE)
            return
        self._reader._buffer.clear()  # RFC 3207 §5: nothing sent in the clear after STARTTLS counts
        await super().smtp_STARTTLS(arg)

    async def smtp_NOOP(self, arg: str) -> None:
        await self.reply(OK)

    async def smtp_RSET(self, arg: str) -> None:
        self._end_txn("RSET")
        self._set_rset_state()
        await self.reply(OK)

    async def smtp_VRFY(self, arg: str) -> None:
        await self.reply(VRFY_REPLY)  # never confirms who exists

    async def smtp_EXPN(self, arg: str) -> None:
        await self.reply(NOT_IMPLEMENTED)

    async def smtp_QUIT(self, arg: str) -> None:
        self._end_txn("QUIT")
        await super().smtp_QUIT(arg)

    # --- AUTH (RFC 4954) ------------------------------------------------------------

    async def _challenge(self, prompt: bytes) -> bytes | None:
        got = await self.challenge_auth(prompt)
        return None if got is MISSING else got  # aiosmtpd has answered "*" and bad base64 itself

    async def smtp_AUTH(self, arg: str) -> None:
        if not await self._sequence_ok():
            return
        if not self.session.extended_smtp or self.txn is not None:
            await self.reply(BAD_SEQUENCE)  # RFC 4954 §4: not during a mail transaction
            return
        if not self._auth_allowed():
            await self.reply(ENCRYPTION_REQUIRED)
            return
        if self.account is not None:
            await self.reply(ALREADY_AUTH)
            return
        args = (arg or "").split()
        if not args or len(args) > 2:
            await self.reply(BAD_ARGUMENTS)
            return
        mech = args[0].upper()
        try:
            if mech == "PLAIN":
                if len(args) == 2:  # RFC 4954 §4: "=" is an empty initial response
                    blob = b"" if args[1] == "=" else b64decode(args[1], validate=True)
                else:
                    blob = await self._challenge(b"")
                    if blob is None:
                        return
                creds = plain_credentials(blob)
                if isinstance(creds, Reply):
                    await self.reply(creds)
                    return
                user, password = creds
            elif mech == "LOGIN":
                raw_user = b64decode(args[1], validate=True) if len(args) == 2 else await self._challenge(b"Username:")
                if raw_user is None:
                    return
                raw_pw = await self._challenge(b"Password:")
                if raw_pw is None:
                    return
                user, password = raw_user.decode("utf-8"), raw_pw.decode("utf-8")
            else:
                await self.reply(UNKNOWN_MECHANISM)
                return
        except (binascii.Error, UnicodeDecodeError, ValueError):
            await self.reply(SYNTAX_ERROR.with_text("Cannot decode the response"))
            return
        try:
            acct = await self.doors.auth.login(user, password, ip=self.peer_ip, protocol="smtp")
        except AuthThrottled:
            await self.reply(AUTH_THROTTLED)
            return
        except AppPasswordRequired:
            await self.reply(APP_PASSWORD_REQUIRED)
            return
        except AuthFailed:
            await self.reply(AUTH_FAILED)
            return
        self.account = acct
        self.session.authenticated = True
        await self.reply(AUTH_OK)

    # --- MAIL / RCPT / DATA (RFC 5321 §3.3) -----------------------------------------------

    async def smtp_MAIL(self, arg: str | None) -> None:
        if not await self._sequence_ok():
            return
        if self._auth_required and self.account is None:
            await self.reply(AUTH_REQUIRED)
            return
        if self.doors.draining:
            await self.reply(SHUTTING_DOWN)
            self.transport.close()
            return
        if self.txn is not None:
            await self.reply(BAD_SEQUENCE.with_text("Nested MAIL command"))
            return
        args = parse_mail(arg, extended=self.session.extended_smtp, max_size=self.doors.max_size)
        if isinstance(args, Reply):
            await self.reply(args)
            return
        addr = args.mail_from
        if self.account is not None:
            why = check_sender(addr, login_account=self.account.address,
                               allowed_addresses=await self.doors.submitter.sender_addresses(self.account))
        else:
            why = check_unauthenticated_sender(addr, local_domains=await self.doors.submitter.local_domains())
        if why is not None:
            await self.reply(why)
            return
        self.txn = Transaction(new_queue_id(), addr, args.smtputf8, args.body_8bit, args.size, time.monotonic())
        await self.reply(SENDER_OK)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if not await self._sequence_ok():
            return
        if self._auth_required and self.account is None:
            await self.reply(AUTH_REQUIRED)
            return
        txn = self.txn
        if txn is None:
            await self.reply(BAD_SEQUENCE.with_text("Need MAIL command"))
            return
        path = parse_rcpt(arg)
        if isinstance(path, Reply):
            await self.reply(path)
            return
        if len(txn.rcpts) >= self.doors.max_recipients:
            await self.reply(TOO_MANY_RECIPIENTS)  # RFC 5321 §4.5.3.1.10
            return
        submitter = self.doors.submitter
        addr, route = check_forward_path(path, smtputf8=txn.smtputf8, authenticated=self.account is not None,
                                         local_domains=await submitter.local_domains())
        if isinstance(route, Reply):
            txn.refused += 1
            await self.reply(route)
            return
        rcpt = "postmaster" if addr.is_bare_postmaster else str(addr)
        if route is Route.LOCAL:
            sender = None if txn.mail_from.is_null else txn.mail_from.key()
            why = await submitter.check_recipient(rcpt, sender=sender, size=txn.size or 0)
            if why is not None:
                txn.refused += 1
                await self.reply(why)
                return
        # Duplicates are dropped; a remote local part may be case-sensitive (RFC 5321 §2.4), ours are not.
        key = rcpt.lower() if route is Route.LOCAL else rcpt
        if key not in txn.seen:
            txn.seen.add(key)
            txn.rcpts.append(rcpt)
        await self.reply(RECIPIENT_OK)

    async def _read_data(self) -> Spool | None:
        """The message up to CRLF.CRLF, dot-unstuffed (RFC 5321 §4.5.2); None if it was too big.

        Read in chunks, not lines: long lines are tolerated (the size limit is
        what counts, and it is applied as the data streams). Bytes after the
        terminator (a pipelined next command) are handed back to the reader.
        """
        reader = self._reader
        data = DataReader(self.doors.max_size, Spool())
        try:
            while True:
                chunk = await reader.read(DATA_CHUNK)
                if not chunk:
                    raise ConnectionResetError("connection closed during DATA")
                rest = data.feed(chunk)
                if rest is not None:
                    break
        except BaseException:
            data.spool.close()
            raise
        if rest:
            reader._buffer[0:0] = rest  # RFC 2920: commands pipelined after the dot
        if data.too_big:
            return None
        return data.spool

    async def smtp_DATA(self, arg: str | None) -> None:
        if not await self._sequence_ok():
            return
        if self._auth_required and self.account is None:
            await self.reply(AUTH_REQUIRED)
            return
        txn = self.txn
        if arg:
            await self.reply(SYNTAX_ERROR.with_text("Syntax: DATA"))
            return
        if txn is None:
            await self.reply(BAD_SEQUENCE.with_text("Need MAIL command"))
            return
        if not txn.rcpts:
            await self.reply(NO_VALID_RECIPIENTS)
            return
        self.busy = True
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                async with asyncio.timeout(self.doors.data_timeout):  # RFC 5321 §4.5.3.2
                    spool = await self._read_data()
            except TimeoutError:
                self._log_txn(txn, "data timeout")
                self.txn = None
                self._writer.write(f"{DATA_TIMEOUT}\r\n".encode())
                self.transport.close()
                return
            size = spool.size if spool is not None else None
            if spool is None:
                outcome = Outcome(txn.queue_id, MESSAGE_TOO_BIG)  # RFC 1870 §6, RFC 3463 X.3.4
            else:
                outcome = await self._deliver_spooled(txn, spool)
            await self.reply(outcome.reply)
            self._log_txn(txn, str(outcome.reply.code) + " " + outcome.reply.enhanced, size=size, outcome=outcome)
            self.txn = None
            self._set_post_data_state()
        finally:
            self.busy = False
        if self.doors.draining:
            self.shut_if_idle()

    async def _deliver_spooled(self, txn: Transaction, spool: Spool) -> Outcome:
        """Deliver what was received; a spooled (large) message waits for one of LARGE_DELIVERIES slots."""
        try:
            async with self.doors.large if spool.on_disk else contextlib.nullcontext():
                data = await offload(spool.getvalue) if spool.on_disk else spool.getvalue()
                spool.close()
                return await self._deliver(txn, data)
        finally:
            spool.close()

    async def _deliver(self, txn: Transaction, data: bytes) -> Outcome:
        esmtp = self.session.extended_smtp
        client = Client(self.peer_ip, self.session.host_name or "", with_protocol(
            esmtp=esmtp, tls=self.tls_active, authenticated=self.account is not None, smtputf8=txn.smtputf8),
            tls=self._tls_info())
        try:
            if self.account is not None:
                return await self.doors.submitter.submit(Submission(
                    txn.reverse_path, tuple(txn.rcpts), data, self.account, client, origin="submission",
                    queue_id=txn.queue_id, recipients_checked=True))
            return await self.doors.acceptor.accept(Inbound(txn.reverse_path, tuple(txn.rcpts), data, client,
                                                            txn.queue_id))
        except Exception:  # noqa: BLE001 - the client keeps the message and retries
            log.exception("smtp queue_id=%s delivery failed", txn.queue_id)
            return Outcome(txn.queue_id, TEMPORARY_FAILURE)

    # --- the log --------------------------------------------------------------------

    def _end_txn(self, why: str) -> None:
        if self.txn is not None:
            self._log_txn(self.txn, f"abandoned ({why})")
            self.txn = None

    def _log_txn(self, txn: Transaction, result: str, *, size: int | None = None,
                 outcome: Outcome | None = None) -> None:
        if not log.isEnabledFor(logging.INFO):
            return  # the fields below are escaped for the line; not worth doing for nothing
        shown = ",".join(f"<{logfield(r)}>" for r in txn.rcpts[:10]) + (",..." if len(txn.rcpts) > 10 else "")
        log.info("smtp queue_id=%s listener=%s client=%s helo=%s tls=%s user=%s from=<%s> to=%s refused=%d "
                 "size=%s delivered=%s queued=%s result=%s ms=%.1f",
                 txn.queue_id, self.kind.name, self.peer_ip, logfield(self.session.host_name, 100),
                 "yes" if self.tls_active else "no", self.account.address if self.account else "-",
                 logfield(txn.reverse_path) if txn.reverse_path else "", shown or "-", txn.refused,
                 size if size is not None else "-",
                 outcome.delivered if outcome else "-", outcome.queued if outcome else "-", result,
                 (time.monotonic() - txn.started) * 1000)
