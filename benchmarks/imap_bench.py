"""IMAP benchmark: a 10,000-message folder (SELECT, FETCH, SEARCH, SORT, THREAD, STORE timings) and the memory of idle IDLE connections.

Usage: .venv/bin/python benchmarks/imap_bench.py [--messages 10000] [--idle 1000] [--runs 5] [--no-dovecot]
       (--idle 10000 holds ten thousand connections; building their accounts takes some minutes)

The server runs as a separate process (`postroom serve`) on loopback; a small literal-aware
client times each command from sending it to reading its tagged reply, so every figure
includes writing and reading the whole response. Memory is the RSS of a fresh server process
read from /proc (VmRSS) with none, half and all of the idle connections open (each LOGIN,
SELECT INBOX, IDLE); the slope between the last two is the cost of one more connection. When Dovecot runs as the loopback peer of ../shared/peers
(127.0.0.1:10143, user1 / pass) the same operations run against it and ratios are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher

from mailboxes.ingest import prepare
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from mailboxes.store import Delivery

WORDS = ["report", "budget", "meeting", "review", "schedule", "tax", "office", "district", "approval", "document", "notice", "policy", "payment", "invoice", "audit", "quarterly", "annual", "summary", "request", "reply"]
HANZI = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民"
         "得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义")
PASSWORD = "bench-pw"
MESSAGE_OCTETS = 5300  # ~53 MB for 10,000 messages, as in the Dovecot reference run
DOVECOT = ("127.0.0.1", 10143, "user1", "pass")
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


def make_message(i: int, rng: random.Random) -> bytes:
    """A plain message; 1% carry "reconciliation" in the body, 1% "稽查", 1% "overdue" in the subject.

    Messages come in threads of five (the last four name the first in References:),
    and Date: headers are spread over November, not in arrival order, so SORT and THREAD have work.
    """
    words = [rng.choice(WORDS) for _ in range(60)]
    zh = "".join(rng.choice(HANZI) for _ in range(300))
    if i % 100 == 7:
        words.insert(rng.randrange(len(words)), "reconciliation")
    if i % 100 == 13:
        pos = rng.randrange(len(zh))
        zh = zh[:pos] + "稽查" + zh[pos:]
    subject = f"message {i} {rng.choice(WORDS)}" + (" overdue" if i % 100 == 21 else "")
    root = i - i % 5
    thread = f"References: <{root}.0@city.test>\r\n" if root != i else ""
    rng.random()  # the draw the Message-ID once used: the words above and below stay as they were
    minute = (i * 7919) % (28 * 1440)
    head = (f"From: user{i % 50}@city.test\r\nTo: staff@city.test\r\nSubject: {subject}\r\n"
            f"Date: {1 + minute // 1440:02d} Nov 2026 {minute % 1440 // 60:02d}:{minute % 60:02d}:00 +0800\r\n"
            f"Message-ID: <{i}.0@city.test>\r\n{thread}"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
    raw = head.encode() + (" ".join(words) + "\r\n" + zh + "\r\n").encode()
    pad = MESSAGE_OCTETS - len(raw)
    if pad > 0:
        raw += (("x" * 70 + "\r\n") * (pad // 72 + 1)).encode()[:pad]
    return raw


# --- a small, fast, literal-aware client ----------------------------------------------------------


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.n = 0

    @classmethod
    async def connect(cls, host: str, port: int) -> Client:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        c = cls(reader, writer)
        await reader.readuntil(b"\r\n")  # greeting
        return c

    async def cmd(self, text: str | bytes) -> tuple[int, int, bytes]:
        """Send one command; (untagged responses, octets received, tagged line)."""
        self.n += 1
        tag = b"b%d" % self.n
        data = text.encode() if isinstance(text, str) else text
        self.writer.write(tag + b" " + data + b"\r\n")
        return await self.read_until(tag)

    async def read_until(self, tag: bytes) -> tuple[int, int, bytes]:
        count = octets = 0
        reader = self.reader
        while True:
            line = await reader.readuntil(b"\r\n")
            octets += len(line)
            while (m := _LITERAL.search(line)) is not None:
                n = int(m.group(1))
                await reader.readexactly(n)
                octets += n
                line = await reader.readuntil(b"\r\n")
                octets += len(line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{line!r}")
                return count, octets, line
            if line.startswith(b"* "):
                count += 1

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def timed(client: Client, command: str, runs: int) -> tuple[float, int, int]:
    times = []
    count = octets = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        count, octets, _ = await client.cmd(command)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), count, octets


async def operations(host: str, port: int, user: str, password: str, runs: int) -> dict[str, float]:
    c = await Client.connect(host, port)
    await c.cmd(f"LOGIN {user} {password}")
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    await c.cmd("SELECT INBOX")
    out["SELECT (first)"] = (time.perf_counter() - t0) * 1000
    out["SELECT"], _, _ = await timed(c, "SELECT INBOX", runs)
    t0 = time.perf_counter()
    await c.cmd("UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE)")
    out["UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE) first"] = (time.perf_counter() - t0) * 1000
    out["UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE)"], count, _ = await timed(
        c, "UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE)", runs)
    messages = count
    out["UID FETCH 1:* headers as Thunderbird asks"], _, _ = await timed(
        c, "UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
           "Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])", runs)
    out["UID FETCH 1:* (BODYSTRUCTURE)"], _, _ = await timed(c, "UID FETCH 1:* (BODYSTRUCTURE)", runs)
    ms, count, octets = await timed(c, "FETCH 1:* BODY.PEEK[]", max(1, runs // 2))
    out["FETCH 1:* BODY.PEEK[] (all bodies)"] = ms
    out["  bodies MB"] = octets / 1e6
    out["SEARCH SUBJECT overdue (header word)"], _, _ = await timed(c, "SEARCH SUBJECT overdue", runs)
    out["SEARCH BODY reconciliation (English)"], _, _ = await timed(c, "SEARCH BODY reconciliation", runs)
    # RFC 3501 §6.4.4: substrings, not words: the middle of "reconciliation"
    out["SEARCH BODY econcilia (mid-word)"], _, _ = await timed(c, "SEARCH BODY econcilia", runs)
    out["SEARCH TEXT econcilia (mid-word)"], _, _ = await timed(c, "SEARCH TEXT econcilia", runs)
    out["SEARCH TEXT ty.te (header, 5 chars)"], _, _ = await timed(c, "SEARCH TEXT ty.te", runs)
    out["SEARCH BODY zq (2 chars, no hit)"], _, _ = await timed(c, "SEARCH BODY zq", runs)
    zh = "稽查".encode()
    out["SEARCH CHARSET UTF-8 BODY 稽查 (Chinese)"], _, _ = await timed(
        c, b"SEARCH CHARSET UTF-8 BODY {%d+}\r\n" % len(zh) + zh, runs)
    times = []
    for k in range(runs):
        t0 = time.perf_counter()
        await c.cmd("STORE 1:* +FLAGS (\\Flagged)" if k % 2 == 0 else "STORE 1:* -FLAGS (\\Flagged)")
        times.append((time.perf_counter() - t0) * 1000)
    out["STORE 1:* +FLAGS / -FLAGS (\\Flagged)"] = statistics.median(times)
    await c.cmd("LOGOUT")
    await c.close()
    out["  messages"] = messages
    return out


SORTS = ("SORT (DATE) UTF-8 ALL", "SORT (REVERSE ARRIVAL) UTF-8 ALL", "SORT (SUBJECT) UTF-8 ALL",
         "SORT (FROM DATE) UTF-8 ALL", "UID SORT (DISPLAYFROM) UTF-8 ALL",
         "SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL", "SORT (DATE) UTF-8 FROM user7",
         "THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL")


async def sort_figures(host: str, port: int, user: str, password: str, runs: int) -> dict[str, float]:
    """SORT / THREAD timings; the first THREAD in a fresh process is cold (no parse cached), and while it
    runs a second connection sends NOOPs: their slowest round trip is how long the event loop stalled."""
    c = await Client.connect(host, port)
    await c.cmd(f"LOGIN {user} {password}")
    await c.cmd("SELECT INBOX")
    other = await Client.connect(host, port)
    await other.cmd(f"LOGIN {user} {password}")
    out: dict[str, float] = {}
    idle_worst = 0.0
    for _ in range(200):  # the noise floor: NOOP round trips with nothing else running
        t1 = time.perf_counter()
        await other.cmd("NOOP")
        idle_worst = max(idle_worst, (time.perf_counter() - t1) * 1000)
    worst = 0.0
    noops = 0
    t0 = time.perf_counter()
    job = asyncio.ensure_future(c.cmd("THREAD REFERENCES UTF-8 ALL"))
    while not job.done():
        t1 = time.perf_counter()
        await other.cmd("NOOP")
        worst = max(worst, (time.perf_counter() - t1) * 1000)
        noops += 1
    await job
    out["THREAD REFERENCES UTF-8 ALL, cold"] = (time.perf_counter() - t0) * 1000
    out["  slowest NOOP of another session meanwhile, ms"] = worst
    out["  NOOPs answered meanwhile"] = noops
    out["  slowest of 200 NOOPs with the server otherwise idle, ms"] = idle_worst
    for command in SORTS:
        out[command], _, _ = await timed(c, command, runs)
    await c.cmd("LOGOUT")
    await other.close()
    await c.close()
    return out


# --- the Postroom side ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(data: Path, port: int, url: str | None = None) -> Path:
    """A loopback IMAP-only server config; ``url``: the store (default SQLite in ``data``)."""
    cfg = data / ("postroom.toml" if url is None else f"postroom-{port}.toml")
    storage = f'[storage]\nurl = "{url}"\n' if url else ""
    cfg.write_text(f"""{storage}[server]
data_dir = "{data}"
log_level = "warning"
[listen]
smtp = ""
submission = ""
submissions = ""
imap = "127.0.0.1:{port}"
imaps = ""
http = ""
[tls]
allow_plaintext_auth_on_loopback = true
[limits]
imap_connections_per_account = 100000
""")
    return cfg


async def populate(data: Path, n: int, idle_accounts: int) -> None:
    mb = await open_mailboxes(StorageConfig(url=f"sqlite:///{data}/postroom.db"),
                              hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    try:
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("bench@city.test", password=PASSWORD)
        rng = random.Random(1)
        t0 = time.perf_counter()
        for i in range(0, n, 500):
            batch = [prepare(make_message(k, rng)) for k in range(i, min(n, i + 500))]
            await asyncio.gather(*(mb.store.deliver(Delivery(p, ((acct, "INBOX"),))) for p in batch))
        print(f"  built {n} messages in {time.perf_counter() - t0:.1f} s", flush=True)
        idle = []
        for k in range(idle_accounts):
            idle.append(await mb.add_account(f"idle{k}@city.test", password=PASSWORD))
        for k in range(20):  # each idle account gets a 20-message INBOX
            p = prepare(make_message(k, rng))
            await mb.store.deliver(Delivery(p, tuple((a, "INBOX") for a in idle)))
        for name in await mb.store.partitions_of(acct):  # indexed: the server starts idle, not catching up
            await mb.store.catch_up_index(name)
    finally:
        await mb.close()


class Server:
    """``postroom serve`` as a process; ``tree``: run it from another checkout's source (same interpreter)."""

    def __init__(self, cfg: Path, port: int, tree: Path | None = None) -> None:
        self.cfg, self.port = cfg, port
        if tree is None:
            cmd, cwd, env = [str(ROOT / ".venv" / "bin" / "postroom")], None, None
        else:
            cmd, cwd, env = [sys.executable, "-m", "mailserver.cli"], tree, {**os.environ, "PYTHONPATH": str(tree)}
        # One process: its RSS and CPU are the server's (SQLite's automatic count is two workers now).
        self.proc = subprocess.Popen([*cmd, "--config", str(cfg), "serve", "--workers", "1"], cwd=cwd, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("postroom serve did not start: " + self.proc.stderr.read().decode()[-2000:])
                time.sleep(0.1)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def idle_memory(server: Server, n: int) -> list[tuple[int, float]]:
    """RSS (MiB) with 0, n/2 and n idle connections; the slope between the last two is the cost of one."""
    clients: list[Client] = []
    points = [(0, server.rss_mib())]

    async def one(k: int) -> Client:
        c = await Client.connect("127.0.0.1", server.port)
        await c.cmd(f"LOGIN idle{k}@city.test {PASSWORD}")
        await c.cmd("SELECT INBOX")
        c.writer.write(b"i IDLE\r\n")
        await c.reader.readuntil(b"+ idling\r\n")
        return c

    for target in (n // 2, n):
        while len(clients) < target:
            k = len(clients)
            clients += await asyncio.gather(*(one(j) for j in range(k, min(target, k + 100))))
        await asyncio.sleep(1.0)
        points.append((target, server.rss_mib()))
    for c in clients:
        c.writer.write(b"DONE\r\n")
        await c.close()
    return points


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# --- Dovecot -------------------------------------------------------------------------------------


def dovecot_up() -> bool:
    try:
        socket.create_connection(DOVECOT[:2], 0.5).close()
        return True
    except OSError:
        return False


async def dovecot_populate(n: int) -> None:
    """Give Dovecot's user1 the same INBOX (reused when it already holds n messages)."""
    c = await Client.connect(*DOVECOT[:2])
    await c.cmd(f"LOGIN {DOVECOT[2]} {DOVECOT[3]}")
    c.writer.write(b"s STATUS INBOX (MESSAGES)\r\n")
    have = 0
    while True:
        line = await c.reader.readuntil(b"\r\n")
        if line.startswith(b"* STATUS"):
            have = int(re.search(rb"MESSAGES (\d+)", line).group(1))
        if line.startswith(b"s "):
            break
    if have != n:
        if have:
            await c.cmd("SELECT INBOX")
            await c.cmd("STORE 1:* +FLAGS.SILENT (\\Deleted)")
            await c.cmd("EXPUNGE")
        rng = random.Random(1)
        for k in range(n):
            raw = make_message(k, rng)
            await c.cmd(b"APPEND INBOX {%d+}\r\n" % len(raw) + raw)
    await c.cmd("LOGOUT")
    await c.close()


# --- main ----------------------------------------------------------------------------------------


def show(title: str, ours: dict[str, float], peer: dict[str, float] | None) -> None:
    print(f"\n{title}")
    for k, v in ours.items():
        if k.startswith("  "):
            print(f"  {k.strip():<48} {v:>10.1f}")
            continue
        line = f"  {k:<48} {v:>10.1f} ms"
        if peer and k in peer and peer[k] > 0:
            line += f"   dovecot {peer[k]:>8.1f} ms   ratio {v / peer[k]:.3g}"
        print(line)


async def amain(args: argparse.Namespace) -> None:
    raise_fd_limit()
    data = Path(tempfile.mkdtemp(prefix="imapbench-"))
    try:
        port = free_port()
        cfg = write_config(data, port)
        print(f"building the store in {data} ...", flush=True)
        await populate(data, args.messages, args.idle)
        server = Server(cfg, port)
        try:  # a fresh process: the first pass is cold (no rendered ENVELOPE yet), the second warm
            cold = await operations("127.0.0.1", port, "bench@city.test", PASSWORD, args.runs)
            ours = await operations("127.0.0.1", port, "bench@city.test", PASSWORD, args.runs)
        finally:
            server.stop()
        peer = None
        if args.dovecot and dovecot_up():
            print("populating Dovecot (user1) ...", flush=True)
            await dovecot_populate(args.messages)
            await operations(*DOVECOT, args.runs)  # its first pass builds its index and cache files
            peer = await operations(*DOVECOT, args.runs)
        for k in ("SELECT (first)", "UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE) first"):
            ours.pop(k)
            if peer:
                peer.pop(k)
        show(f"Postroom, {args.messages}-message folder (median of {args.runs}, second pass)", ours, peer)
        if peer is None:
            print("  (no comparison: --no-dovecot, or Dovecot not on 127.0.0.1:10143; see ../shared/peers/README.md)")
        print(f"  cold, in a fresh server process: SELECT {cold['SELECT (first)']:.1f} ms, UID FETCH 1:* "
              f"(FLAGS ENVELOPE RFC822.SIZE) {cold['UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE) first']:.1f} ms")
        server = Server(cfg, port)
        try:  # another fresh process: the first THREAD loads every stored parse
            sorts = await sort_figures("127.0.0.1", port, "bench@city.test", PASSWORD, args.runs)
        finally:
            server.stop()
        show(f"SORT and THREAD, {args.messages}-message folder (median of {args.runs})", sorts, None)
        server = Server(cfg, port)
        try:
            points = await idle_memory(server, args.idle)
        finally:
            server.stop()
        (_, base), (half_n, half), (full_n, full) = points
        per = (full - half) * 1024 / max(full_n - half_n, 1)
        print(f"\nidle IDLE connections (LOGIN, SELECT INBOX of 20 messages, IDLE), one account each: {args.idle}")
        print(f"  server RSS: {base:.1f} MiB idle, {half:.1f} MiB at {half_n}, {full:.1f} MiB at {full_n}")
        print(f"  {per:.1f} KiB per further connection; 10,000 connections ≈ "
              f"{full + per * (10000 - full_n) / 1024:.0f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10000)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--no-dovecot", dest="dovecot", action="store_false")
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
