"""A real Postroom IMAP server on 127.0.0.1 ephemeral ports, in a thread with its own event loop, for client tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from argon2 import PasswordHasher

from mailboxes.ingest import prepare
from mailboxes.model import Account
from mailboxes.partitions import StorageConfig
from mailboxes.service import Mailboxes, open_mailboxes
from mailboxes.store import Delivery
from mailserver import config as config_mod
from mailserver import tls
from mailserver.app import Context
from mailserver.auth import Authenticator
from mailserver.imap.server import ImapService, start
from mailserver.watchdog import Watchdog
from tests.conftest import FAST_HASHER
from tests.support import templates

T = TypeVar("T")
PASSWORD = "secret-pw"


class ImapServer:
    """Start with ``ImapServer(tmp_path).start()``; ``run(coro)`` executes on the server's loop."""

    def __init__(self, tmp: Path, *, storage_url: str | None = None, plaintext_on_loopback: bool = True,
                 limits: dict[str, Any] | None = None, whole_server: bool = False,
                 hasher: PasswordHasher = FAST_HASHER, hash_slots: int | None = None,
                 proxy_trusted: list[str] | None = None, early_accounts: tuple[str, ...] = ()) -> None:
        """``whole_server``: start every listener family through the composition root (delivery, SMTP, IMAP).

        ``hasher`` / ``hash_slots``: the Argon2 hasher (a test may wrap one to count verifications) and how
        many hashes may run at once.
        """
        self.tmp = tmp
        self.early_accounts = early_accounts  # made before the services start (one that needs its account at start)
        self.hasher, self.hash_slots = hasher, hash_slots
        if storage_url is None:  # a new store is a copy of a migrated one; a second server on `tmp` reopens it
            db = tmp / "postroom.db"
            storage_url = f"sqlite:///{db}" if db.exists() else templates.sqlite_url(db)
        self.storage_url = storage_url
        self.cert, self.key = tmp / "tls" / "cert.pem", tmp / "tls" / "key.pem"
        tls.make_self_signed(self.cert, self.key, "localhost")
        self.whole_server = whole_server
        others = "127.0.0.1:0" if whole_server else ""
        extra: dict[str, Any] = {"queue": {"mx_lookup": False}, "dkim": {"dns_lookup": False}} if whole_server else {}
        self.config = config_mod.build({
            **extra,
            "server": {"data_dir": str(tmp), "hostname": "localhost"},
            "listen": {"imap": "127.0.0.1:0", "imaps": "127.0.0.1:0", "smtp": others, "submission": others,
                       "submissions": "", "http": "", "proxy_trusted": proxy_trusted or []},
            "tls": {"cert": str(self.cert), "key": str(self.key),
                    "allow_plaintext_auth_on_loopback": plaintext_on_loopback},
            "storage": {"url": self.storage_url},
            "limits": {"auth_failures": 1000, **(limits or {})},
        })
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="imap-server", daemon=True)
        self.mb: Mailboxes
        self.service: ImapService
        self.watchdog: Watchdog
        self.services: list = []
        self.accounts: dict[str, Account] = {}

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> ImapServer:
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        self.mb = await open_mailboxes(StorageConfig(url=self.storage_url), hasher=self.hasher,
                                       hash_slots=self.hash_slots)
        reopened = any(d.name == "city.test" for d in await self.mb.directory.list_domains())
        if not reopened:  # a second server on the same store (a restart) finds what the first made
            await self.mb.directory.add_domain("city.test")
        for name in self.early_accounts:
            await self.add_account(name)
        auth = Authenticator.create(self.mb.directory, max_failures=self.config.get("limits", "auth_failures"),
                                    window_s=300)
        ctx = Context(self.config, self.mb, self.mb.store.bus, auth, tls.server_context(self.cert, self.key))
        if self.whole_server:
            from mailserver.app import start_all

            self.services = await start_all(ctx)
            self.ctx = ctx  # its extras hold the running parts (delivery: keys, routes, queue)
            self.service = next(s for s in self.services if isinstance(s, ImapService))
            self.smtp = ctx.extras["smtp"]
        else:
            [self.service] = await start(ctx)
            self.services = [Watchdog().start(), self.service]  # as the composition root does
        self.watchdog = next(s for s in self.services if isinstance(s, Watchdog))
        for name in ("alice", "bob"):
            if reopened:
                self.accounts[name] = await self.mb.directory.account(f"{name}@city.test")
            else:
                await self.add_account(name)

    def stop(self) -> None:
        async def _stop() -> None:
            from mailserver.app import stop_all

            await stop_all(self.services)
            await self.mb.close()

        try:
            self.run(_stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def loop_run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the server's loop from a test's own event loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    # --- addresses and data -------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.service.addresses["imap"][1]

    @property
    def tls_port(self) -> int:
        return self.service.addresses["imaps"][1]

    async def add_account(self, name: str, **kw) -> Account:
        acct = await self.mb.add_account(f"{name}@city.test", password=PASSWORD, **kw)
        self.accounts[name] = acct
        return acct

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX", *, flags: int = 0) -> None:
        """Deliver through the store (the path SMTP and submit() take), not through IMAP."""
        self.run(self.deliver_many(user, [raw], folder, flags=flags))

    async def deliver_many(self, user: str, raws: list[bytes], folder: str = "INBOX", *, flags: int = 0,
                           batch: int = 500) -> None:
        acct = self.accounts[user]
        for i in range(0, len(raws), batch):
            prepared = [prepare(r) for r in raws[i:i + batch]]
            results = await asyncio.gather(*(self.mb.store.deliver(Delivery(p, ((acct, folder),), flags))
                                             for p in prepared))
            for res in results:
                for one in res.results:
                    if isinstance(one, Exception):
                        raise one


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds (a liveness limit: only a hang takes it)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def message(subject: str = "Hello", body: str = "Quarterly report attached.", *, sender: str = "carol@city.test",
            to: str = "alice@city.test", msgid: str | None = None, date: str = "Mon, 02 Nov 2026 10:00:00 +0800",
            extra: str = "") -> bytes:
    """A plain UTF-8 message (RFC 2047-encoded subject when it is not ASCII)."""
    from email.header import Header

    subj = subject if subject.isascii() else Header(subject, "utf-8").encode()
    head = (f"From: {sender}\r\nTo: {to}\r\nSubject: {subj}\r\nDate: {date}\r\n"
            f"Message-ID: <{msgid or abs(hash((subject, body)))}@city.test>\r\n{extra}"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
    return head.encode() + body.encode("utf-8") + b"\r\n"


class Raw:
    """A bytes-level client: exactly what is sent is what the server gets (malformed input, transcripts)."""

    def __init__(self, port: int, *, login: str | None = None, timeout: float = 20) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()
        if login:
            _, tagged = self.cmd(b"L0 LOGIN " + login.encode() + b" " + PASSWORD.encode())
            assert tagged.startswith(b"L0 OK"), tagged

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def until(self, tag: bytes) -> tuple[list[bytes], bytes]:
        """Read responses (literals included in their line) up to the tagged one."""
        import re

        out = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError(f"closed; got {out!r}")
            while (m := re.search(rb"\{(\d+)\}\r\n$", line)) is not None:
                line += self.file.read(int(m.group(1)))
                line += self.file.readline()
            if line.startswith(tag + b" "):
                return out, line
            out.append(line)

    def cmd(self, command: bytes) -> tuple[list[bytes], bytes]:
        tag = command.split(b" ", 1)[0]
        self.send(command + b"\r\n")
        return self.until(tag)

    def close(self) -> None:
        self.file.close()
        self.sock.close()
