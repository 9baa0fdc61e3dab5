"""`postroom serve --workers 2` as a real subprocess: both workers serve, a group SIGKILL loses nothing, IDLE hears the sibling.

Starting, failing and replacing workers: test_workers_lifecycle.py (a module of its own, so that
--dist loadfile can give it to the other core).

Which worker took a connection is read off the server's log: every line of a
worker carries `[worker I pid P]`, and an SMTP transaction's line names the
client's HELO, which each test client makes unique.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import os
import re
import signal
import socket
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest

from mailboxes.events import SENT, EventStore, Sources
from mailboxes.service import open_mailboxes
from mailserver import config as config_mod
from tests.conftest import FAST_HASHER

from .smtp.support import PASSWORD, keep_sending, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SMTP_CLIENTS = 20
ACKED_BEFORE_KILL = 150
IDLE_CLIENTS = 12
MAX_DELIVERIES = 40
CONNECTIONS_FOR_BOTH = 24  # a socket nobody accepted on would hang one of them (1 in 2**24 to miss it)  # sent one connection each until both workers have taken some
TXN_LINE = re.compile(r"\[worker (\d+) pid (\d+)\] smtp queue_id=\S+ listener=smtp client=\S+ helo=(\S+) .*"
                      r"result=(\S+)")


EVENT_LINE = re.compile(r"\[worker (\d+) pid \d+\] event id=\d+ .* result=(\S+)")
BATCH = 1000  # one request: one connection, so one worker accepts all of it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def message(subject: str, to: str) -> bytes:
    return (f"From: Outside <sender@outside.example>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}.{os.getpid()}@outside.example>\r\n"
            "Date: Mon, 06 Jan 2025 09:00:00 +0800\r\n\r\nHello.\r\n").encode()


class Server:
    """A data directory, its config, and `postroom serve` runs on it (each in a process group of its own)."""

    def __init__(self, tmp_path: Path, storage_url: str, *, http: bool = False, restart_ms: int = 1000) -> None:
        self.ports = {"smtp": free_port(), "imap": free_port(), **({"http": free_port()} if http else {})}
        self.cfg = tmp_path / "postroom.toml"
        self.log = tmp_path / "serve.log"
        self.cfg.write_text(
            f'[server]\nhostname = "mail.city.test"\ndata_dir = "{tmp_path / "data"}"\nlog_level = "info"\n'
            f'worker_restart_ms = {restart_ms}\n'
            f'[listen]\nsmtp = "127.0.0.1:{self.ports["smtp"]}"\nsubmission = ""\nsubmissions = ""\n'
            f'imap = "127.0.0.1:{self.ports["imap"]}"\nimaps = ""\n'
            + (f'http = "127.0.0.1:{self.ports["http"]}"\n' if http else 'http = ""\n') +
            f'[storage]\nurl = "{storage_url}"\n[tls]\nallow_plaintext_auth_on_loopback = true\n'
            '[queue]\nmx_lookup = false\n[dkim]\ndns_lookup = false\n', encoding="utf-8")
        self.proc: asyncio.subprocess.Process | None = None

    async def command(self, *args: str, log: bool = False) -> asyncio.subprocess.Process:
        out = open(self.log, "ab") if log else asyncio.subprocess.PIPE  # noqa: SIM115 - the child owns it
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mailserver.cli", "--config", str(self.cfg), *args, cwd=ROOT,
            stdout=out, stderr=out, start_new_session=True, env={**os.environ, "POSTROOM_LOG": "INFO"})

    async def init(self, users: list[str]):
        init = await self.command("init")
        assert await init.wait() == 0
        mb = await open_mailboxes(config_mod.load(self.cfg).storage(), hasher=FAST_HASHER)
        await mb.directory.add_domain("city.test")
        for u in users:
            await mb.add_account(u, password=PASSWORD)
        return mb

    async def start(self, workers: int = 2) -> None:
        since = self.log.stat().st_size if self.log.exists() else 0
        self.proc = await self.command("serve", "--workers", str(workers), log=True)
        await wait_for(lambda: self.log_since(since).count(f" of {workers})") == workers, timeout=60,
                       what="the workers to serve")

    def log_since(self, offset: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def transactions(self) -> list[tuple[int, str, str]]:
        """(worker slot, HELO, result) of every SMTP transaction logged so far."""
        text = self.log.read_text(errors="replace")
        return [(int(m[1]), m[3], m[4]) for m in TXN_LINE.finditer(text)]

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(90):
                return await self.proc.wait()
        except TimeoutError:  # leave no server behind the failed test (the supervisor leads its group)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            raise


async def inbox_subjects(mb, address: str) -> Counter:
    folder = await mb.store.folder(await mb.directory.account(address), "INBOX")
    metas = await mb.store.messages(folder.ref)
    raws = await mb.store.raw_many(folder.ref.partition, [m.blob_id for m in metas])
    return Counter(email.message_from_bytes(raws[m.blob_id])["Subject"] for m in metas)


async def test_two_workers_share_the_load_and_a_group_sigkill_loses_nothing(tmp_path):
    users = [f"u{i}@city.test" for i in range(SMTP_CLIENTS)]
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/data/postroom.db")
    mb = await srv.init(users)
    await srv.start()
    acked: dict[str, tuple[str, ...]] = {}
    stop = asyncio.Event()

    def client(i: int):
        def envelope(k: int):
            subject, to = f"c{i}-{k}", users[(i + 1) % SMTP_CLIENTS]
            return subject, "sender@outside.example", (to,), message(subject, to)
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.ports["smtp"], start_tls=False,
                               local_hostname=f"c{i}.outside.example")
        return keep_sending(smtp, stop, envelope, acked)

    clients = [asyncio.create_task(client(i)) for i in range(SMTP_CLIENTS)]
    try:
        await wait_for(lambda: len(acked) >= ACKED_BEFORE_KILL, timeout=120, what="messages before the kill")
        # Concurrent sessions landed on both workers: the kernel spread the connections.
        by_worker: dict[int, set[str]] = {}
        for slot, helo, _ in srv.transactions():
            by_worker.setdefault(slot, set()).add(helo)
        # (Failed once in CI under load, session 21, its log lost: the assertion now carries what the workers said.)
        assert set(by_worker) == {1, 2}, (by_worker, [line for line in srv.log_since(0).splitlines()
                                                      if "serving" in line or "stalled" in line or "ERROR" in line])
        assert not by_worker[1] & by_worker[2], "one connection is served by one worker"
        os.killpg(srv.proc.pid, signal.SIGKILL)  # the supervisor and both workers at once
        assert await srv.proc.wait() == -signal.SIGKILL
    finally:
        stop.set()
        await asyncio.gather(*clients)
    print(f"acked before SIGKILL: {len(acked)}; sessions per worker: "
          f"{ {w: len(h) for w, h in by_worker.items()} }")

    await srv.start()
    try:
        for addr in users:
            stored = await inbox_subjects(mb, addr)
            assert set(stored.values()) <= {1}, f"{addr} has duplicates"
            for subject, (to,) in acked.items():
                if to == addr:
                    assert stored[subject] == 1, f"{subject} acknowledged but missing from {addr}"
    finally:
        code = await srv.stop()
        await mb.close()
    assert code == 0, srv.log.read_text(errors="replace")[-3000:]
    with pytest.raises(ProcessLookupError):  # nothing of the group is left running
        os.killpg(srv.proc.pid, 0)


class IdleClient:
    """A raw IMAP client that logs in, selects INBOX and idles (RFC 2177), counting EXISTS."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer
        self.exists = 0
        self.changed = asyncio.Event()

    @classmethod
    async def start(cls, port: int, user: str) -> IdleClient:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        c = cls(r, w)
        assert (await r.readline()).startswith(b"* OK")
        for tag, cmd in ((b"a", f'LOGIN {user} "{PASSWORD}"'.encode()), (b"b", b"SELECT INBOX")):
            w.write(tag + b" " + cmd + b"\r\n")
            while not (line := await r.readline()).startswith(tag + b" "):
                c._seen(line)
            assert line.startswith(tag + b" OK"), line
        w.write(b"c IDLE\r\n")
        assert (await r.readline()).startswith(b"+")
        return c

    def _seen(self, line: bytes) -> None:
        m = re.match(rb"\* (\d+) EXISTS", line)
        if m:
            self.exists = int(m[1])
            self.changed.set()

    async def read(self) -> None:
        while line := await self.r.readline():
            self._seen(line)

    def close(self) -> None:
        self.w.close()


async def test_idle_on_one_worker_hears_delivery_through_the_other(tmp_path, storage_url):
    """Every IDLE client hears every delivery, and deliveries go through both workers: so each client, on
    whichever worker, hears mail delivered by the other (fan-out datagrams on SQLite, NOTIFY on PostgreSQL)."""
    reader = "li.na@city.test"
    srv = Server(tmp_path, storage_url)
    mb = await srv.init([reader])
    await srv.start()
    idlers = [await IdleClient.start(srv.ports["imap"], reader) for _ in range(IDLE_CLIENTS)]
    readers = [asyncio.create_task(c.read()) for c in idlers]
    try:
        sent = 0
        while sent < MAX_DELIVERIES and {w for w, _, _ in srv.transactions()} != {1, 2}:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.ports["smtp"], start_tls=False,
                                       local_hostname=f"d{sent}.outside.example") as smtp:
                await smtp.sendmail("sender@outside.example", [reader], message(f"d{sent}", reader))
            sent += 1
            await wait_for(lambda: all(c.exists >= sent for c in idlers), timeout=10,
                           what=f"every IDLE client to see message {sent}")
            await wait_for(lambda: len(srv.transactions()) >= sent, timeout=10, what="the transaction log line")
        workers = Counter(w for w, _, result in srv.transactions())
        assert set(workers) == {1, 2}, workers
        assert all(c.exists == sent for c in idlers)
    finally:
        code = await srv.stop()  # IDLE sessions get BYE and the workers exit
        await asyncio.gather(*readers, return_exceptions=True)
        for c in idlers:
            c.close()
        await mb.close()
    assert code == 0, srv.log.read_text(errors="replace")[-3000:]


async def test_a_batch_posted_to_one_worker_is_delivered_by_both(tmp_path, storage_url):
    """A batch arrives on one worker's connection; its commit wakes the sibling's events worker too
    (a fan-out datagram on SQLite, the insert's NOTIFY on PostgreSQL), so both deliver it. Before,
    the sibling slept until its 30 s poll and one GIL-bound process delivered the whole batch."""
    people = [f"u{i}@city.test" for i in range(20)]
    srv = Server(tmp_path, storage_url, http=True)
    mb = await srv.init(people)
    _, secret, _ = await Sources(mb.router.central).add("oa")
    events = EventStore(mb.router.central)
    await srv.start()
    try:
        evs = [{"id": f"b-{i}", "type": "reminder", "title": f"b-{i}", "body": "b", "locale": "en",
                "recipients": [people[i % len(people)]]} for i in range(BATCH)]
        async with aiohttp.ClientSession() as s, \
                s.post(f"http://127.0.0.1:{srv.ports['http']}/api/v1/events/batch", json={"events": evs},
                       headers={"Authorization": f"Bearer {secret}"}) as r:
            assert r.status == 202, await r.text()
        async def all_sent() -> bool:
            return (await events.counts()).get(SENT) == BATCH
        # well within the idle poll (30 s) that woke the sibling before
        await wait_for(all_sent, timeout=25, what="the batch to be delivered")
        await wait_for(lambda: len(EVENT_LINE.findall(srv.log.read_text(errors="replace"))) >= BATCH, timeout=10,
                       what="the events' log lines")
        lines = EVENT_LINE.findall(srv.log.read_text(errors="replace"))
        by_worker = Counter(w for w, result in lines)
        assert set(by_worker) == {"1", "2"}, by_worker
        assert len(lines) == BATCH and {result for _, result in lines} == {SENT}  # each event once
        got = Counter()
        for p in people:
            got.update(await inbox_subjects(mb, p))
        assert got == Counter(e["title"] for e in evs)
    finally:
        code = await srv.stop()
        await events.close()
        await mb.close()
    assert code == 0, srv.log.read_text(errors="replace")[-3000:]
