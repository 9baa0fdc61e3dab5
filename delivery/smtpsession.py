"""One outbound SMTP connection used for several messages in turn, with PIPELINING (RFC 2920) when the peer offers it.

Implementation notes
- aiosmtplib does the set-up (greeting, EHLO, STARTTLS, AUTH: outbound._connect) but cannot
  pipeline: its protocol drops a reply that arrives before it is awaited. After set-up the
  transport is handed to `_Replies`, a small reader that queues every reply it parses
  (RFC 5321 §4.2: "nnn-" continues, "nnn " ends), bounded by MAX_REPLY_LINE and MAX_REPLY_LINES.
- With PIPELINING, MAIL, every RCPT and DATA go in one write and their replies are read after
  (RFC 2920 §3.1: DATA ends a group). The message text may open the next group (§3.1: "the
  actual transfer of message content is explicitly allowed to be the first command in a group"),
  so the body, its final dot and the next message's MAIL/RCPT/DATA are one write: one round trip
  per message in steady state. Without PIPELINING each command waits for its reply.
- After DATA completes the next MAIL starts a new transaction (RFC 5321 §4.1.1.1); RSET is sent
  only after a transaction that ended before DATA (§4.1.1.5). If DATA is answered 354 although no
  RCPT was accepted, an empty message is ended with "." (RFC 2920 §3.1) and its reply ignored.
- Every reply is awaited with the command timeout; a lost connection fails the message in
  flight (and the one whose final reply was pending) with `SessionLost`.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_REPLY_LINE = 2048  # octets of one reply line (RFC 5321 §4.5.3.1.5 says 512; peers are lax)
MAX_REPLY_LINES = 100  # lines of one multi-line reply
_PERIOD = re.compile(rb"(?m)^\.")
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")


class SessionLost(Exception):
    """The connection broke or timed out; `answered` tells whether the peer ever replied on it after set-up."""

    def __init__(self, why: str, answered: bool) -> None:
        super().__init__(why)
        self.answered = answered


@dataclass(frozen=True)
class Job:
    """One message to some recipients of one domain, with the MAIL parameters it needs."""

    mail_from: str
    rcpts: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()
    utf8: bool = False


@dataclass(frozen=True)
class Answer:
    code: int
    text: str


@dataclass
class Outcome:
    """What the peer said for one job: the MAIL reply, one reply per recipient, and the final DATA reply."""

    mail: Answer | None = None
    rcpts: dict[str, Answer] | None = None
    final: Answer | None = None


class _Replies(asyncio.Protocol):
    """Parses replies off a transport into a queue; connection_lost wakes every waiter."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines: list[str] = []
        self._code = 0
        self.replies: deque[Answer] = deque()
        self.lost: str | None = None
        self._wake = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.answered = False

    def data_received(self, data: bytes) -> None:
        self._buf.extend(data)
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_REPLY_LINE:
                    self._fail("reply line too long")
                return
            line = bytes(self._buf[:nl + 1]).rstrip(b"\r\n")
            del self._buf[:nl + 1]
            if len(line) > MAX_REPLY_LINE or len(line) < 3 or not line[:3].isdigit():
                self._fail(f"malformed reply line {line[:40]!r}")
                return
            self._lines.append(line[4:].decode("utf-8", "replace").strip())
            if len(self._lines) > MAX_REPLY_LINES:
                self._fail("reply too long")
                return
            if line[3:4] != b"-":
                self.replies.append(Answer(int(line[:3]), "\n".join(self._lines)))
                self._lines = []
                self.answered = True
                self._wake.set()

    def _fail(self, why: str) -> None:
        self.lost = why
        self._wake.set()
        if self.transport is not None:
            self.transport.abort()

    def connection_made(self, transport) -> None:  # set_protocol does not call it; kept for completeness
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.lost or f"connection lost: {exc.__class__.__name__ if exc else 'closed by peer'}"
        self._wake.set()
        self._can_write.set()

    def eof_received(self) -> bool:
        self.lost = self.lost or "connection closed by peer"
        self._wake.set()
        return False

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def next(self, timeout: float) -> Answer:
        while not self.replies:
            if self.lost:
                raise SessionLost(self.lost, self.answered)
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                raise SessionLost("timed out waiting for a reply", self.answered) from None
        return self.replies.popleft()

    async def drained(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._can_write.wait()
        except TimeoutError:
            raise SessionLost("timed out sending", self.answered) from None


def _body(data: bytes) -> bytes:
    """The message as sent after 354: CRLF line ends, leading dots doubled, then CRLF.CRLF (RFC 5321 §4.5.2)."""
    data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return _PERIOD.sub(b"..", data) + b".\r\n"


def _envelope(job: Job) -> list[bytes]:
    enc = "utf-8" if job.utf8 else "ascii"
    opts = "".join(f" {o}" for o in job.mail_options)
    cmds = [f"MAIL FROM:<{job.mail_from}>{opts}\r\n".encode(enc)]
    cmds += [f"RCPT TO:<{r}>\r\n".encode(enc) for r in job.rcpts]
    return cmds + [b"DATA\r\n"]


class Session:
    """A set-up SMTP connection (after EHLO/STARTTLS/AUTH) that runs transactions one after another."""

    def __init__(self, transport: asyncio.Transport, extensions: dict[str, str], *, timeout: float,
                 where: str, keep: object = None) -> None:
        self.where = where
        self._keep = keep  # the client that set the connection up (owns nothing now; kept alive with it)
        self.lost_why = ""
        self.extensions = extensions
        self.timeout = timeout
        self.pipelining = "pipelining" in extensions
        self._transport = transport
        self._r = _Replies()
        self._r.transport = transport
        transport.set_protocol(self._r)
        self.used = 0  # transactions run on it
        self.broken = False

    def supports(self, ext: str) -> bool:
        return ext.lower() in self.extensions

    @property
    def alive(self) -> bool:
        return not self.broken and self._r.lost is None and not self._transport.is_closing()

    async def _write(self, data: bytes) -> None:
        if self._r.lost:
            raise SessionLost(self._r.lost, self._r.answered)
        self._transport.write(data)
        await self._r.drained(self.timeout)

    async def _read(self) -> Answer:
        return await self._r.next(self.timeout)

    async def run(self, take: Callable[[], Job | None], done: Callable[[Job, Outcome], None]) -> None:
        """Send jobs from `take()` until it gives None; `done` gets each job's outcome once, as it is known.

        Raises SessionLost when the connection fails: the job in flight, and the next one if it was
        already taken, are given to `done` with what is known so far (a partial Outcome; the next one's
        envelope may have been sent, but never its text).
        """
        pending: list[Job] = []  # taken, not yet reported (by identity: an id() can be reused once freed)

        def taker() -> Job | None:
            j = take()
            if j is not None:
                pending.append(j)
            return j

        def report(j: Job, o: Outcome) -> None:
            for k, p in enumerate(pending):
                if p is j:
                    del pending[k]
                    done(j, o)
                    return

        self._done = report
        job = taker()
        envelope_sent = False
        while job is not None:
            out = Outcome(rcpts={})
            try:
                job, envelope_sent = await self._one(job, out, envelope_sent, taker)
            except SessionLost as exc:
                self.broken = True
                self.lost_why = str(exc)
                report(job, out)
                for j in list(pending):
                    report(j, Outcome(rcpts={}))
                raise

    async def _one(self, job: Job, out: Outcome, envelope_sent: bool, take) -> tuple[Job | None, bool]:
        """One transaction; returns the next job and whether its envelope was already written."""
        cmds = _envelope(job)
        if self.pipelining:
            if not envelope_sent:
                await self._write(b"".join(cmds))
            replies = [await self._read() for _ in cmds]
        else:
            replies = []
            for c in cmds[:-1]:
                await self._write(c)
                replies.append(await self._read())
                if len(replies) == 1 and replies[0].code // 100 != 2:
                    break  # MAIL refused: no RCPT nor DATA was sent
            accepted_any = any(a.code // 100 == 2 for a in replies[1:])
            if replies[0].code // 100 == 2 and accepted_any:
                await self._write(cmds[-1])
                replies.append(await self._read())
        out.mail = replies[0]
        for r, a in zip(job.rcpts, replies[1:1 + len(job.rcpts)]):
            out.rcpts[r] = a
        data_reply = replies[1 + len(job.rcpts)] if len(replies) > 1 + len(job.rcpts) else None
        accepted = [r for r, a in out.rcpts.items() if a.code // 100 == 2] if out.mail.code // 100 == 2 else []
        self.used += 1
        if data_reply is None or data_reply.code != 354:
            if data_reply is not None:
                out.final = data_reply
            if out.mail.code // 100 == 2:  # a transaction was opened and did not reach DATA: end it
                await self._write(b"RSET\r\n")
                await self._read()
            self._done(job, out)
            return take(), False
        if not accepted:  # RFC 2920 §3.1: 354 with no recipient accepted; send an empty message
            await self._write(b".\r\n")
            await self._read()
            self._done(job, out)
            return take(), False
        nxt = take()
        tail = b"".join(_envelope(nxt)) if nxt is not None and self.pipelining else b""
        await self._write(_body(job.data) + tail)
        out.final = await self._read()
        self._done(job, out)
        return nxt, bool(tail)

    async def quit(self) -> None:
        """QUIT (RFC 5321 §4.1.1.10) without waiting long, then close."""
        try:
            if self.alive:
                self._transport.write(b"QUIT\r\n")
                async with asyncio.timeout(min(self.timeout, 2.0)):
                    await self._r.next(self.timeout)
        except (SessionLost, TimeoutError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.broken = True
        self._transport.close()
