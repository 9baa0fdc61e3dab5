"""Crash safety: `postroom serve` killed with SIGKILL under 20 sending clients keeps every message it said 250 to.

The server runs as a subprocess, in one process (tests/protocol/test_workers.py kills
a server of two workers). Twenty aiosmtplib clients submit without
pause; every fourth message also goes to a remote domain whose server (a
sink in this test) answers 451 until the restart, so those recipients wait
in the queue. After SIGKILL and a restart: every message that got a 250 is
in its recipient's INBOX exactly once, and the queue resumes and empties
into the sink.
"""

from __future__ import annotations

import asyncio
import email
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiosmtplib
import pytest

from delivery.queue import Queue
from delivery.routes import Routes
from mailboxes.service import open_mailboxes
from mailserver import config as config_mod
from tests.conftest import FAST_HASHER

from .support import PASSWORD, keep_sending, message, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.interop]

ROOT = Path(__file__).resolve().parents[3]
CLIENTS = 20
ACKED_BEFORE_KILL = 150
LEASE_S = 5  # [queue] lease: short, so the killed process's claims lapse soon (the default 30 s only waits)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """The remote domain's server: answers 451 to DATA until told to accept."""

    def __init__(self) -> None:
        self.accept = False
        self.subjects: Counter = Counter()
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def reply_to_data(self, r: asyncio.StreamReader, data: bytes, rcpts: list[str]) -> bytes | None:
        """The reply to a message's final dot (None: hang up without one)."""
        if not self.accept:
            return b"451 4.3.0 not now\r\n"
        self.subjects[email.message_from_bytes(data)["Subject"]] += 1
        return b"250 2.0.0 kept\r\n"

    async def _session(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"220 sink.remote.example ESMTP\r\n")
        rcpts: list[str] = []
        try:
            while line := await r.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    w.write(b"250-sink.remote.example\r\n250 8BITMIME\r\n")
                elif verb == b"RCPT":
                    rcpts.append(line.split(b"<", 1)[-1].split(b">", 1)[0].decode())
                    w.write(b"250 2.1.5 ok\r\n")
                elif verb == b"DATA":
                    w.write(b"354 go ahead\r\n")
                    await w.drain()
                    reply = await self.reply_to_data(r, await r.readuntil(b"\r\n.\r\n"), rcpts)
                    if reply is None:
                        return
                    rcpts = []
                    w.write(reply)
                elif verb == b"QUIT":
                    w.write(b"221 bye\r\n")
                    await w.drain()
                    break
                else:
                    w.write(b"250 2.0.0 ok\r\n")
                await w.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()


def write_config(tmp_path: Path, storage_url: str) -> tuple[Path, dict[str, int]]:
    ports = {"smtp": free_port(), "submission": free_port(), "submissions": free_port()}
    cfg = tmp_path / "postroom.toml"
    cfg.write_text(
        f'[server]\nhostname = "mail.city.test"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[listen]\nsmtp = "127.0.0.1:{ports["smtp"]}"\nsubmission = "127.0.0.1:{ports["submission"]}"\n'
        f'submissions = "127.0.0.1:{ports["submissions"]}"\nimap = ""\nimaps = ""\nhttp = ""\n'
        f'[storage]\nurl = "{storage_url}"\n'
        '[tls]\nallow_plaintext_auth_on_loopback = true\n'
        f'[queue]\nretry_delays = [1]\nmx_lookup = false\nlease = {LEASE_S}\n[dkim]\ndns_lookup = false\n', encoding="utf-8")
    return cfg, ports


async def postroom(cfg: Path, *args: str, log: Path | None = None) -> asyncio.subprocess.Process:
    out = open(log, "ab") if log else asyncio.subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailserver.cli", "--config", str(cfg), *args, cwd=ROOT,
        stdout=out, stderr=out, env={**os.environ, "POSTROOM_LOG": "WARNING"})


START_ATTEMPTS = 5  # a port another process took between free_port() and the server's bind: new ports


async def serving(server: asyncio.subprocess.Process, log: Path, since: int) -> bool:
    """Wait until `postroom serve` says it serves (True) or exits (False; what it said is in the log)."""
    def said() -> str:
        with open(log, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")
    await wait_for(lambda: server.returncode is not None or "postroom serving" in said(), timeout=60,
                   what="the server to start or exit")
    return server.returncode is None


async def serve_on_fresh_ports(configure: Callable[[], tuple[Path, dict[str, int]]], log: Path, *args: str
                               ) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    """`postroom serve` with the config `configure()` writes on fresh ports; again with others when one was
    taken between free_port() and the server's bind (by another test's process: CI runs them side by side)."""
    for _ in range(START_ATTEMPTS):
        cfg, ports = configure()
        since = log.stat().st_size if log.exists() else 0
        server = await postroom(cfg, "serve", *args, log=log)
        if await serving(server, log, since):
            return server, ports
        said = log.read_bytes()[since:].decode(errors="replace")
        assert "address already in use" in said, said[-3000:]
    raise AssertionError(f"no free ports in {START_ATTEMPTS} attempts")


async def serve(tmp_path: Path, storage_url: str, log: Path, *args: str
                ) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    """`postroom serve` on fresh ports (the config rewritten), started again on others when one was taken."""
    return await serve_on_fresh_ports(lambda: write_config(tmp_path, storage_url), log, *args)


async def port_open(port: int) -> bool:
    try:
        _, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    w.close()
    return True


async def test_sigkill_under_load_loses_no_acknowledged_message(tmp_path, storage_url):
    cfg, ports = write_config(tmp_path, storage_url)
    init = await postroom(cfg, "init")
    assert await init.wait() == 0
    config = config_mod.load(cfg)
    mb = await open_mailboxes(config.storage(), hasher=FAST_HASHER)
    sink = Sink()
    await sink.start()
    await mb.directory.add_domain("city.test")
    for i in range(CLIENTS):
        await mb.add_account(f"u{i}@city.test", password=PASSWORD)
    await Routes(mb.router.central).add("remote.example", f"127.0.0.1:{sink.port}", tls="opportunistic")

    log = tmp_path / "serve.log"
    server, ports = await serve(tmp_path, storage_url, log, "--workers", "1")
    acked: dict[str, tuple[str, ...]] = {}
    stop = asyncio.Event()

    def client(i: int):
        def envelope(k: int):
            subject = f"c{i}-{k}"
            rcpts = (f"u{(i + 1) % CLIENTS}@city.test",) + (("far@remote.example",) if k % 4 == 0 else ())
            return subject, f"u{i}@city.test", rcpts, message(subject, sender=f"u{i}@city.test", to=rcpts[0])
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=ports["submission"], start_tls=False,
                               username=f"u{i}@city.test", password=PASSWORD, local_hostname="pc.city.test")
        return keep_sending(smtp, stop, envelope, acked)

    clients = [asyncio.create_task(client(i)) for i in range(CLIENTS)]
    await wait_for(lambda: len(acked) >= ACKED_BEFORE_KILL, timeout=60, what="messages before the kill")
    server.send_signal(signal.SIGKILL)
    assert await server.wait() == -signal.SIGKILL
    stop.set()
    await asyncio.gather(*clients)
    assert len(acked) >= ACKED_BEFORE_KILL
    print(f"acked before SIGKILL: {len(acked)}")

    sink.accept = True
    server, ports = await serve(tmp_path, storage_url, log, "--workers", "1")
    try:
        for i in range(CLIENTS):
            addr = f"u{i}@city.test"
            acct = await mb.directory.account(addr)
            folder = await mb.store.folder(acct, "INBOX")
            metas = await mb.store.messages(folder.ref)
            raws = await mb.store.raw_many(folder.ref.partition, [m.blob_id for m in metas])
            stored = Counter(email.message_from_bytes(raws[m.blob_id])["Subject"] for m in metas)
            assert set(stored.values()) <= {1}, f"{addr} has duplicates"
            for subject, rcpts in acked.items():
                if rcpts[0] == addr:
                    assert stored[subject] == 1, f"{subject} acknowledged but missing from {addr}"
        remote = {s for s, r in acked.items() if len(r) == 2}
        assert remote, "some acknowledged messages had a remote recipient"
        # Claims of the killed process are due again when their lease runs out (no node name match).
        await wait_for(lambda: remote <= set(sink.subjects), timeout=LEASE_S + 60,
                       what="the queue to resume")
        queue = Queue(mb.router.central, node="test")
        await wait_for(lambda: _empty(queue), timeout=30, what="an empty queue")
    finally:
        server.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(server.wait(), 30)
        await mb.close()
        sink.server.close()
    assert code == 0, log.read_text(errors="replace")[-3000:]


async def _empty(queue: Queue) -> bool:
    return await queue.pending_count() == 0
