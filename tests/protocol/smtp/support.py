"""Test support for SMTP and delivery: a Postroom instance started in-process on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiosmtplib
from argon2 import PasswordHasher

from delivery import service as delivery_service
from delivery.service import DeliveryParts
from mailboxes.changes import ChangeBus
from mailboxes.model import Account
from mailboxes.service import Mailboxes, open_mailboxes
from mailserver import config as config_mod
from mailserver import tls
from mailserver.app import Context
from mailserver.auth import Authenticator
from mailserver.smtp import server as smtp_server
from mailserver.smtp.server import SmtpService
from tests.conftest import FAST_HASHER
from tests.support import templates

PASSWORD = "correct horse battery staple"
INBOX_READS = 5  # Instance.inbox: list-then-bodies reads before a missing body is a failure


class FakeClock:
    """A clock the test moves by hand (queue schedules, delay warnings, expiry)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_config(data_dir: Path, storage_url: str, *, hostname: str = "mail.city.test", **sections) -> config_mod.Config:
    """An instance's config; an SQLite store that does not exist yet starts as a copy of the migrated template."""
    if storage_url.startswith("sqlite:///") and not (db := Path(storage_url[len("sqlite:///"):])).exists():
        templates.sqlite_url(db)
    raw = {
        "server": {"hostname": hostname, "data_dir": str(data_dir)},
        "listen": {"smtp": "127.0.0.1:0", "submission": "127.0.0.1:0", "submissions": "127.0.0.1:0",
                   "imap": "", "imaps": "", "http": ""},
        "storage": {"url": storage_url},
        "queue": {"mx_lookup": False, "retry_delays": [60, 300]},
        "dkim": {"dns_lookup": False},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return config_mod.build(raw)


@dataclass
class Instance:
    ctx: Context
    parts: DeliveryParts
    smtp: SmtpService
    services: list = field(default_factory=list)

    @property
    def mb(self) -> Mailboxes:
        return self.ctx.mailboxes

    def port(self, listener: str = "smtp") -> int:
        return self.smtp.addresses[listener][1]

    async def add_user(self, address: str, password: str = PASSWORD, **kw) -> Account:
        return await self.mb.add_account(address, password=password, **kw)

    async def inbox(self, address: str, folder: str = "INBOX") -> list[bytes]:
        """The folder's messages. The list and the bodies are two reads: a message the running server removes
        between them (an intake filing or quarantining it) has no body left, so the list is read again; a
        body missing from a message that stays listed fails."""
        acct = await self.mb.directory.account(address)
        f = await self.mb.store.folder(acct, folder)
        for _ in range(INBOX_READS):
            metas = await self.mb.store.messages(f.ref)
            raws = await self.mb.store.raw_many(f.ref.partition, [m.blob_id for m in metas])
            if all(m.blob_id in raws for m in metas):
                return [raws[m.blob_id] for m in metas]
        missing = [m.uid for m in metas if m.blob_id not in raws]
        raise AssertionError(f"{address} {folder}: UIDs {missing} stay listed without their bodies")

    async def stop(self) -> None:
        for s in reversed(self.services):
            await s.close()
        await self.mb.close()


async def start_instance(cfg: config_mod.Config, *, domains: tuple[str, ...] = ("city.test",),
                         clock=None, dialer=None, resolver=None, hasher: PasswordHasher = FAST_HASHER,
                         hash_slots: int | None = None) -> Instance:
    if not cfg.tls_cert.exists():
        tls.make_self_signed(cfg.tls_cert, cfg.tls_key, cfg.hostname)
    bus = ChangeBus()
    mb = await open_mailboxes(cfg.storage(), bus=bus, hasher=hasher, hash_slots=hash_slots)
    for d in domains:
        if d not in await mb.directory.local_domains():
            await mb.directory.add_domain(d)
    auth = Authenticator.from_config(mb.directory, cfg)
    ctx = Context(cfg, mb, bus, auth, tls.server_context(cfg.tls_cert, cfg.tls_key))
    kw = {}
    if clock is not None:
        kw["clock"] = clock
    if dialer is not None:
        kw["dialer"] = dialer
    if resolver is not None:
        kw["resolver"] = resolver
    parts = delivery_service.build(mb, cfg, **kw)
    ctx.extras["delivery"] = parts
    ctx.extras["submit"] = parts.submitter.submit
    await parts.worker.start()
    services = [parts.worker]
    services += await smtp_server.start(ctx)
    return Instance(ctx, parts, ctx.extras["smtp"], services)


@contextlib.asynccontextmanager
async def running(cfg: config_mod.Config, users: tuple[str, ...] = ("zhang.wei@city.test", "li.na@city.test")):
    """An instance with these accounts for the body of a `async with`; stopped after it."""
    inst = await start_instance(cfg)
    for u in users:
        await inst.add_user(u)
    try:
        yield inst
    finally:
        await inst.stop()


async def wait_for(condition, timeout: float = 15.0, interval: float = 0.02, what: str = "condition"):
    """Poll an (async or plain) condition until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def message(subject: str = "hello", *, sender: str = "zhang.wei@city.test", to: str = "li.na@city.test",
            body: str = "Hello.\r\n", extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}.{time.monotonic_ns()}@test>\r\n"
            f"Date: Mon, 06 Jan 2025 09:00:00 +0800\r\n{extra}\r\n{body}").encode()


class RawClient:
    """A byte-level SMTP client for exact replies, pipelining and malformed input."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, *, ssl_context=None) -> "RawClient":
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_context)
        c = cls(r, w)
        code, _ = await c.read_reply()
        assert code == 220
        return c

    async def read_reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            if not line:
                raise ConnectionError("closed")
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        return int(lines[-1][:3]), "\n".join(x[4:] for x in lines)

    async def cmd(self, line: str | bytes) -> tuple[int, str]:
        self.writer.write((line.encode() if isinstance(line, str) else line) + b"\r\n")
        await self.writer.drain()
        return await self.read_reply()

    async def starttls(self, ctx) -> None:
        code, _ = await self.cmd("STARTTLS")
        assert code == 220
        await self.writer.start_tls(ctx)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def client_tls():
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def keep_sending(smtp: aiosmtplib.SMTP, stop: asyncio.Event,
                       envelope: Callable[[int], tuple[str, str, tuple[str, ...], bytes]],
                       acked: dict[str, tuple[str, ...]]) -> None:
    """Send on one connection until `stop`; `envelope(k)` gives (subject, sender, recipients, message).

    Each message the server said 250 to goes into `acked` (subject -> recipients). A server killed
    under the client ends it quietly: what was not acknowledged is the client's to resend.
    """
    k = 0
    try:
        await smtp.connect()
        while not stop.is_set():
            subject, sender, rcpts, data = envelope(k)
            errors, _ = await smtp.sendmail(sender, list(rcpts), data)
            assert errors == {}
            acked[subject] = rcpts
            k += 1
    except (aiosmtplib.SMTPException, ConnectionError, OSError):
        pass
