"""The district's IMAP client for pull mode (aioimaplib): connect over IMAPS or STARTTLS, log in, list, fetch in batches, delete by UID.

Implementation notes
- TLS always (RFC 8314 §3 implicit TLS, or RFC 3501 §6.2.1 STARTTLS); the certificate is checked
  against the system's CAs or `[pull] ca_file` (the city's own certificate), host name included:
  the password is never sent to a server that cannot prove who it is.
- aioimaplib does not fail pending commands when the connection drops, and it has no STARTTLS:
  every command here races the connection's loss (`conn_lost_cb`) and a timeout, and STARTTLS is
  done on the raw stream before the transport is handed to aioimaplib's protocol (what the
  server sent before TLS is discarded, RFC 3501 §6.2.1; plaintext buffered behind the OK refuses
  the upgrade, CVE-2011-0411).
- FETCH waits with an idle timeout (reset on every byte, aioimaplib's command timer), not a total
  one: a large batch over a slow link is not cut while it is moving.
- Deleting is UID STORE +FLAGS.SILENT (\\Deleted) then UID EXPUNGE of exactly those UIDs
  (RFC 4315 §2.1), never a plain EXPUNGE that could remove what another client marked.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

import aioimaplib

MAX_GREETING = 8192  # bytes of the pre-TLS greeting and STARTTLS reply lines
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d{1,10})\]")
_FETCH_START = re.compile(rb"\A\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d{1,10})\b")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d{1,12})\b")


class PullError(Exception):
    """The upstream could not be reached, refused us, or the link dropped: try again later."""


@dataclass(frozen=True)
class Listed:
    uid: int
    size: int


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """Verify the upstream: the system's CAs, or only what `ca_file` holds (a self-signed city certificate)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _uid_set(uids: Iterable[int]) -> str:
    return ",".join(str(u) for u in uids)


def parse_sizes(lines: list) -> list[Listed]:
    out = []
    for line in lines:
        if isinstance(line, (bytes, bytearray)) and _FETCH_START.match(line):
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid and size:
                out.append(Listed(int(uid.group(1)), int(size.group(1))))
    return out


def parse_bodies(lines: list) -> dict[int, bytes]:
    """UID -> message from a UID FETCH (BODY.PEEK[]) response (the UID before or after the literal)."""
    out: dict[int, bytes] = {}
    uid: int | None = None
    body: bytes | None = None

    def flush() -> None:
        if uid is not None and body is not None:
            out[uid] = body

    for item in lines:
        if isinstance(item, bytearray):
            body = bytes(item)
            continue
        if _FETCH_START.match(item):
            flush()
            uid, body = None, None
        m = _UID.search(item)
        if m and uid is None:
            uid = int(m.group(1))
    flush()
    return out


class _StartTlsIMAP4(aioimaplib.IMAP4):
    """aioimaplib's client with the connection upgraded by STARTTLS before its protocol sees a byte."""

    def create_client(self, host, port, loop, conn_lost_cb=None, ssl_context=None) -> None:
        loop = loop or asyncio.get_running_loop()
        self.protocol = aioimaplib.IMAP4ClientProtocol(loop, conn_lost_cb)
        self._client_task = loop.create_task(self._upgrade(host, port, ssl_context))

    async def _upgrade(self, host: str, port: int, ctx: ssl.SSLContext) -> None:
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_GREETING)
        try:
            greeting = await reader.readline()
            if not greeting.startswith(b"* OK"):
                raise PullError(f"{host}:{port} greeted with {greeting[:80]!r}")
            writer.write(b"S1 STARTTLS\r\n")
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    raise PullError(f"{host}:{port} closed the connection at STARTTLS")
                if line.startswith(b"S1 "):
                    break
            if not line.startswith(b"S1 OK"):
                raise PullError(f"{host}:{port} refused STARTTLS: {line[:80]!r}")
            if reader._buffer:  # noqa: SLF001 - bytes the server sent behind the OK, before TLS
                raise PullError(f"{host}:{port} sent data behind its STARTTLS reply")
            await writer.start_tls(ctx, server_hostname=host)
        except BaseException:
            writer.transport.abort()
            raise
        self._streams = (reader, writer)  # kept: a StreamWriter collected closes its transport (Python 3.11.5+)
        transport = writer.transport
        transport.set_protocol(self.protocol)
        self.protocol.connection_made(transport)
        # No greeting follows STARTTLS; aioimaplib waits for one before it asks CAPABILITY (again, as
        # RFC 3501 §6.2.1 wants: the capabilities seen before TLS are forgotten).
        self.protocol.data_received(b"* OK TLS established\r\n")


class Upstream:
    """One IMAP session with the upstream's pull mailbox. `async with Upstream(...) as up:`."""

    def __init__(self, host: str, port: int, *, tls: str, ctx: ssl.SSLContext, timeout: float) -> None:
        self.host, self.port, self.tls, self.ctx, self.timeout = host, port, tls, ctx, timeout
        self._lost: asyncio.Future | None = None
        self.client: aioimaplib.IMAP4 | None = None

    async def __aenter__(self) -> Upstream:
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()

        def lost(exc) -> None:
            if not self._lost.done():
                self._lost.set_result(exc)

        cls = aioimaplib.IMAP4 if self.tls == "imaps" else _StartTlsIMAP4
        try:
            self.client = cls(self.host, self.port, timeout=self.timeout, conn_lost_cb=lost, ssl_context=self.ctx)
            await self._call(self.client.wait_hello_from_server())
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        client = self.client
        if client is None:
            return
        if self._lost is not None and not self._lost.done() and client.protocol.transport is not None:
            try:
                async with asyncio.timeout(min(self.timeout, 5.0)):
                    await client.protocol.logout()
            except Exception:  # noqa: BLE001 - going away anyway
                pass
        transport = client.protocol.transport
        if transport is not None:
            transport.abort() if self._lost is None or not self._lost.done() else transport.close()
        for task in list(getattr(client, "tasks", ())) + list(getattr(client.protocol, "tasks", ())):
            task.cancel()
        task = getattr(client, "_client_task", None)
        if task is not None and not task.done():
            task.cancel()

    @property
    def peer_ip(self) -> str:
        """The address we are connected to (for the Received field of what we deliver)."""
        transport = self.client.protocol.transport if self.client is not None else None
        peer = transport.get_extra_info("peername") if transport is not None else None
        return peer[0] if peer else self.host

    async def _call(self, aw: Awaitable, *, idle: bool = False):
        """Await one command; a dropped link or the timeout raises PullError at once.

        `idle`: the command's own timer (reset by every byte that arrives) bounds it instead.
        """
        task = asyncio.ensure_future(aw)
        assert self._lost is not None
        limit = None if idle else self.timeout
        try:
            done, _ = await asyncio.wait({task, self._lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        if task in done:
            try:
                return task.result()
            except (aioimaplib.AioImapException, OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
                raise PullError(f"{self.host}:{self.port}: {exc.__class__.__name__} {exc}") from None
        task.cancel()
        if self._lost.done():
            raise PullError(f"the link to {self.host}:{self.port} dropped")
        raise PullError(f"{self.host}:{self.port} did not answer within {self.timeout:g} s")

    async def _ok(self, aw: Awaitable, what: str, **kw):
        resp = await self._call(aw, **kw)
        if resp.result != "OK":
            raise PullError(f"{what} refused: {b' '.join(x for x in resp.lines if isinstance(x, bytes))[:200]!r}")
        return resp

    async def login(self, account: str, password: str) -> None:
        await self._ok(self.client.protocol.login(account, password), "LOGIN")

    async def select(self, mailbox: str = "INBOX") -> int:
        """SELECT; the mailbox's UIDVALIDITY (RFC 3501 §2.3.1.1)."""
        resp = await self._ok(self.client.protocol.select(mailbox), "SELECT")
        for line in resp.lines:
            m = _UIDVALIDITY.search(line) if isinstance(line, bytes) else None
            if m:
                return int(m.group(1))
        raise PullError("SELECT gave no UIDVALIDITY")

    async def uids(self) -> list[int]:
        """Every UID in the mailbox, ascending (one SEARCH line: about 8 bytes per message)."""
        resp = await self._ok(self.client.protocol.search("ALL", by_uid=True, charset=None), "UID SEARCH")
        found: list[int] = []
        for line in resp.lines[:-1]:  # aioimaplib gives "* SEARCH 1 2" as b"1 2"; the last line is the tagged text
            if isinstance(line, bytes):
                found.extend(int(x) for x in line.split() if x.isdigit() and len(x) <= 10)
        return sorted(set(found))

    async def sizes(self, uids: list[int]) -> list[Listed]:
        resp = await self._ok(self.client.protocol.fetch(_uid_set(uids), "(UID RFC822.SIZE)", by_uid=True,
                                                         timeout=self.timeout), "UID FETCH sizes", idle=True)
        return sorted(parse_sizes(resp.lines), key=lambda x: x.uid)

    async def bodies(self, uids: list[int]) -> dict[int, bytes]:
        resp = await self._ok(self.client.protocol.fetch(_uid_set(uids), "(UID BODY.PEEK[])", by_uid=True,
                                                         timeout=self.timeout), "UID FETCH", idle=True)
        return parse_bodies(resp.lines)

    async def set_aside(self, uids: list[int], folder: str) -> None:
        """Copy these messages into `folder` at the upstream (made if missing), before they are deleted from INBOX."""
        await self._call(self.client.protocol.simple_command("CREATE", folder))  # NO when it exists: fine
        await self._ok(self.client.protocol.copy(_uid_set(uids), folder, by_uid=True), "UID COPY")

    async def delete(self, uids: list[int]) -> None:
        """Remove exactly these messages (RFC 4315 §2.1 UID EXPUNGE)."""
        if "UIDPLUS" not in self.client.protocol.capabilities:
            raise PullError("the upstream does not offer UIDPLUS (RFC 4315): cannot remove by UID")
        s = _uid_set(uids)
        await self._ok(self.client.protocol.store(s, "+FLAGS.SILENT", r"(\Deleted)", by_uid=True), "UID STORE")
        await self._ok(self.client.protocol.expunge(s, by_uid=True), "UID EXPUNGE")
