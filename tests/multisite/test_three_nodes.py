"""Three `postroom serve` processes on one PostgreSQL: one folder, one queue, one change feed, one node killed.

Each node is a subprocess with its own config file and its own loopback
ports; they share nothing but the database. The test shows, in order:
- 30 SMTP clients spread over the three nodes deliver 3,000 messages into
  one folder: each is there once, UIDs are unique, and each client's
  messages (sent one after another) got increasing UIDs; UIDNEXT is above
  them all.
- An IMAP client in IDLE on node A hears of a message delivered through
  node C within a second (LISTEN/NOTIFY).
- Node B is killed with SIGKILL while it holds queue claims (its outbound
  deliveries stall in DATA at a loopback sink); after its lease ran out the
  other nodes deliver them, and the sink receives each recipient exactly once.
"""

from __future__ import annotations

import asyncio
import email
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import select

from delivery.queue import DELIVERING, Queue
from delivery.routes import Routes
from mailboxes import schema as t
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER, _create_pg_database
from tests.protocol.smtp.support import PASSWORD, message, wait_for
from tests.protocol.smtp.test_crash import Sink, free_port, postroom, serve_on_fresh_ports

pytestmark = [pytest.mark.slow, pytest.mark.pg]

NODES = 3
CLIENTS = 30
MESSAGES = 3000
LEASE_S = 4  # [queue] lease: short, so the killed node's claims lapse soon
BOX = "box@city.test"
SENDER = "sender@city.test"
REMOTE = [f"far{i}@remote.example" for i in range(6)]
IDLE_BOUND_S = 1.0  # the bound for a change on one node to reach IDLE on another


class StallingSink(Sink):
    """The remote domain's server: holds every DATA reply until released; records only what it acknowledged.

    A session whose client vanished while held (its node was killed) records
    nothing: that delivery was never acknowledged, so it must be made again.
    """

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.held = 0
        self.received: Counter = Counter()  # (subject, recipient) -> times acknowledged

    async def reply_to_data(self, r: asyncio.StreamReader, data: bytes, rcpts: list[str]) -> bytes | None:
        if not await self._hold(r):
            return None  # the client died waiting: nothing acknowledged
        subject = email.message_from_bytes(data)["Subject"]
        for rcpt in rcpts:
            self.received[(subject, rcpt)] += 1
        return b"250 2.0.0 kept\r\n"

    async def _hold(self, r: asyncio.StreamReader) -> bool:
        """Wait for the release; False if the client hung up first (it sends nothing until our reply)."""
        self.held += 1
        eof = asyncio.ensure_future(r.read(1))
        released = asyncio.ensure_future(self.release.wait())
        try:
            await asyncio.wait({eof, released}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.held -= 1
            released.cancel()
        if not released.done() or released.cancelled():
            return False
        eof.cancel()
        return True


def write_config(path: Path, url: str, ports: dict[str, int]) -> Path:
    cfg = path / "postroom.toml"
    path.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        f'[server]\nhostname = "{path.name}.city.test"\ndata_dir = "{path / "data"}"\nworkers = 1\n'
        f'[listen]\nsmtp = "127.0.0.1:{ports["smtp"]}"\nsubmission = "127.0.0.1:{ports["submission"]}"\n'
        f'imap = "127.0.0.1:{ports["imap"]}"\nsubmissions = ""\nimaps = ""\nhttp = ""\n'
        f'[storage]\nurl = "{url}"\n'
        '[tls]\nallow_plaintext_auth_on_loopback = true\n'
        f'[queue]\nretry_delays = [1]\nmx_lookup = false\nlease = {LEASE_S}\n[dkim]\ndns_lookup = false\n',
        encoding="utf-8")
    return cfg


async def send_many(port: int, client: int, count: int) -> list[str]:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname=f"c{client}.outside")
    await smtp.connect()
    subjects = []
    for k in range(count):
        subject = f"c{client:02d}-{k:03d}"
        errors, _ = await smtp.sendmail("someone@outside.example", [BOX],
                                        message(subject, sender="someone@outside.example", to=BOX))
        assert errors == {}
        subjects.append(subject)
    await smtp.quit()
    return subjects


class Idler:
    """A raw IMAP client: LOGIN, SELECT INBOX, IDLE; then waits for an EXISTS line."""

    async def start(self, port: int) -> int:
        self.r, self.w = await asyncio.open_connection("127.0.0.1", port)
        await self.r.readline()  # greeting
        await self._command(b'a1 LOGIN "%s" "%s"' % (BOX.encode(), PASSWORD.encode()), b"a1")
        exists = 0
        for line in await self._command(b"a2 SELECT INBOX", b"a2"):
            if line.endswith(b" EXISTS"):
                exists = int(line.split()[1])
        self.w.write(b"a3 IDLE\r\n")
        await self.w.drain()
        assert (await self.r.readline()).startswith(b"+")
        return exists

    async def _command(self, line: bytes, tag: bytes) -> list[bytes]:
        self.w.write(line + b"\r\n")
        await self.w.drain()
        lines = []
        while True:
            got = (await self.r.readline()).rstrip(b"\r\n")
            assert got, "the server hung up"
            if got.startswith(tag + b" "):
                assert got.startswith(tag + b" OK"), got
                return lines
            lines.append(got)

    async def next_exists(self) -> int:
        while True:
            line = (await self.r.readline()).rstrip(b"\r\n")
            assert line, "the server hung up"
            if line.endswith(b" EXISTS"):
                return int(line.split()[1])

    async def close(self) -> None:
        self.w.write(b"DONE\r\na4 LOGOUT\r\n")
        self.w.close()


async def claims_of(db, pid: int) -> int:
    """Queue rows a process (by the pid in its node id, see delivery.queue.node_id) holds now."""
    r = t.queue_recipients.c
    async with db.read() as conn:
        rows = (await conn.execute(select(r.claimed_by).where(r.state == DELIVERING))).scalars().all()
    return sum(1 for c in rows if c and c.split("/")[1] == str(pid))


async def start_node(home: Path, url: str, log: Path) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    """`postroom serve` as one node, serving when this returns."""
    def configure() -> tuple[Path, dict[str, int]]:
        ports = {"smtp": free_port(), "submission": free_port(), "imap": free_port()}
        return write_config(home, url, ports), ports
    return await serve_on_fresh_ports(configure, log)


async def test_three_nodes_share_one_postgresql(tmp_path, pg):
    name = "t_" + uuid.uuid4().hex[:12]
    await asyncio.to_thread(_create_pg_database, pg, name)
    url = pg.url(name)
    mb = await open_mailboxes(StorageConfig(url=url), hasher=FAST_HASHER)  # builds the schema
    sink = StallingSink()
    await sink.start()
    await mb.directory.add_domain("city.test")
    box = await mb.add_account(BOX, password=PASSWORD)
    await mb.add_account(SENDER, password=PASSWORD)
    await Routes(mb.router.central).add("remote.example", f"127.0.0.1:{sink.port}", tls="none")

    logs = [tmp_path / f"node{i}.log" for i in range(NODES)]
    launched = [await start_node(tmp_path / f"node{i}", url, logs[i]) for i in range(NODES)]
    nodes, ports = [n for n, _ in launched], [p for _, p in launched]
    node_a, node_b, node_c = nodes
    try:

        # 1. 3,000 messages through 30 clients over three nodes, into one folder.
        started = time.monotonic()
        sent = await asyncio.gather(*(send_many(ports[i % NODES]["smtp"], i, MESSAGES // CLIENTS)
                                      for i in range(CLIENTS)))
        took = time.monotonic() - started
        print(f"{MESSAGES} messages through {NODES} nodes in {took:.1f} s ({MESSAGES / took:.0f} msg/s)")
        inbox = await mb.store.folder(box, "INBOX")
        metas = await mb.store.messages(inbox.ref)
        raws = await mb.store.raw_many(inbox.ref.partition, [m.blob_id for m in metas])
        uid_of = {}
        for m in metas:
            subject = email.message_from_bytes(raws[m.blob_id])["Subject"]
            assert subject not in uid_of, f"{subject} stored twice"
            uid_of[subject] = m.uid
        assert set(uid_of) == {s for client in sent for s in client}
        assert len({m.uid for m in metas}) == MESSAGES
        for client in sent:  # each client waited for 250 before its next message
            uids = [uid_of[s] for s in client]
            assert uids == sorted(uids) and len(set(uids)) == len(uids)
        after = await mb.store.folder(box, "INBOX")
        assert after.uidnext > max(m.uid for m in metas)

        # 2. IDLE on node A hears of a message delivered through node C.
        idler = Idler()
        exists = await idler.start(ports[0]["imap"])
        assert exists == MESSAGES
        started = time.monotonic()
        await send_many(ports[2]["smtp"], 99, 1)
        assert await asyncio.wait_for(idler.next_exists(), 10) == MESSAGES + 1
        heard = time.monotonic() - started
        print(f"IDLE on node A heard of node C's delivery {heard * 1000:.0f} ms after the 250")
        assert heard < IDLE_BOUND_S
        await idler.close()

        # 3. Node B holds queue claims (outbound DATA stalls at the sink) and is killed.
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=ports[1]["submission"], start_tls=False,
                                 username=SENDER, password=PASSWORD, local_hostname="pc.city.test")
        await client.connect()
        subjects = [f"out-{k}" for k in range(3)]
        for s in subjects:
            errors, _ = await client.sendmail(SENDER, REMOTE, message(s, sender=SENDER, to=REMOTE[0]))
            assert errors == {}
        await client.quit()
        central = mb.router.central
        await wait_for(lambda: claims_of(central, node_b.pid), timeout=20, what="node B to claim deliveries")
        await wait_for(lambda: sink.held > 0, timeout=20, what="a delivery to stall in DATA")
        held = await claims_of(central, node_b.pid)
        node_b.send_signal(signal.SIGKILL)
        assert await node_b.wait() == -signal.SIGKILL
        print(f"node B killed holding {held} recipient claims")
        sink.release.set()
        want = {(s, rcpt) for s in subjects for rcpt in REMOTE}
        await wait_for(lambda: set(sink.received) >= want, timeout=4 * LEASE_S + 20,
                       what="the other nodes to deliver node B's claims")
        queue = Queue(central, node="test")
        await wait_for(lambda: _empty(queue), timeout=20, what="an empty queue")
        assert dict(sink.received) == {k: 1 for k in want}, "each recipient exactly once"
    finally:
        for n in nodes:
            if n.returncode is None:
                n.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(n.wait(), 30) for n in nodes]
        await mb.close()
        sink.server.close()
    assert codes[0] == codes[2] == 0, "\n".join(p.read_text(errors="replace")[-2000:] for p in logs)


async def _empty(queue: Queue) -> bool:
    return await queue.pending_count() == 0
