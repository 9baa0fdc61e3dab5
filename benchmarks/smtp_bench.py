#!/usr/bin/env python3
"""SMTP ingest benchmark: messages/s and p50/p99 latency for 4 KiB messages, end to end, at 1/20/50 sessions.

The server is `postroom serve --workers N` in its own processes (fresh data per run; each
worker count in --workers is a table of its own, its CPU summed over the supervisor and workers);
this script is the load generator: N sessions on loopback, each on one
connection sending MAIL/RCPT/DATA (pipelined, RFC 2920) in a loop to its
own recipient. A message counts when its 250 arrives, and Postroom sends
that 250 only after the message is committed in the recipient's folder, so
the latency is end to end; after each run the folders are counted to check.
PostgreSQL is started the way the tests start it. When the Postfix →
Dovecot peers of /work/shared/peers are running, the same load goes to them
(Postfix on 127.0.0.1:10025, users 2-50; user1 belongs to the IMAP
benchmark), measured until the messages are in the maildirs, and the ratio
is printed. Their mail from earlier runs is removed first (a fresh mailbox
per run), ours only. "cpu ms" is the server's CPU per message; after it, where
that went: the event loop's thread (user+system) and the other threads (the
SQLite writer thread, which runs each delivery transaction, and off-loop work).
The search indexes take new bodies after their 250 (mailboxes/indexer.py): "then
indexing" is the time from the last 250 until none waits, and the server's CPU a
message meanwhile; a message costs the two CPU figures together.

    .venv/bin/python benchmarks/smtp_bench.py [--seconds 8] [--sessions 1 20 50] [--backends sqlite pg]
                                              [--workers 1 2] [--repeat 3] [--no-peers]
                                              [--client python|smtp-source] [--messages 3000]

--client smtp-source (Postfix's load generator, C; installed with the peers) sends --messages 4 KiB
messages per point over N sessions (one smtp-source process per session, each to its own
recipient, one connection each: -d), as issue 9's first table was measured: the figure is the
messages over the wall time until the last is in its mailbox, with no latency column. It leaves
the two cores to the servers: the Python client (the default without smtp-source) spends about as
much CPU per message as Postroom does at 50 sessions, which caps every server it loads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from mailboxes import schema as t  # noqa: E402
from mailboxes.service import open_mailboxes  # noqa: E402
from mailserver import config as config_mod  # noqa: E402
from tests.support import pgserver  # noqa: E402

MESSAGE_SIZE = 4096
USERS = 100
WARMUP_SECONDS = 1.0
PEER_PORT = 10025  # /work/shared/peers: Postfix delivering to Dovecot over LMTP
PEER_DOMAIN = "example.test"
PEER_USERS = range(2, 51)  # user1's INBOX belongs to the IMAP benchmark
PEER_MAILDIRS = Path("/var/tmp/mailbench")
SMTP_SOURCE = "/usr/sbin/smtp-source"
SENT_AT = re.compile(rb"Message-ID: <(\d+\.\d+)\.")
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def message(n: int, rcpt: str) -> bytes:
    # The Message-ID carries the send time, so a peer's delivery time can be read off its maildir file.
    head = (f"From: Load <bench@load.example>\r\nTo: <{rcpt}>\r\nSubject: benchmark message {n}\r\n"
            f"Message-ID: <{time.time():.6f}.{uuid.uuid4().hex[:12]}@load.example>\r\n"
            "Date: Mon, 06 Jan 2025 09:00:00 +0800\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog; 0123456789 abcdefghij.\r\n"
    body = (line * (MESSAGE_SIZE // len(line) + 1))[: MESSAGE_SIZE - len(head) - 2] + b"\r\n"
    return head + body


@dataclass
class Result:
    label: str
    workers: int | None  # None: not Postroom
    sessions: int
    sent: int
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float | None  # server CPU per message
    stored: int | None
    cpu_split: str = ""  # where that CPU went: the event loop's thread (user/system) and the other threads
    index_s: float | None = None  # after the last 250, until the search indexes hold every message (indexer.py)
    index_cpu_ms: float | None = None  # the server's CPU a message meanwhile: indexing that the 250 did not wait for


async def read_reply(r: asyncio.StreamReader) -> int:
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return int(line[:3])


async def session(port: int, rcpt: str, stop_at: float, samples: list[tuple[float, float]]) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await read_reply(r)
    w.write(b"EHLO load.example\r\n")
    await read_reply(r)
    envelope = f"MAIL FROM:<bench@load.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode()
    n = 0
    while time.monotonic() < stop_at:
        body = message(n, rcpt) + b".\r\n"
        t0 = time.perf_counter()
        w.write(envelope)
        codes = [await read_reply(r) for _ in range(3)]
        if codes != [250, 250, 354]:
            raise RuntimeError(f"unexpected replies {codes}")
        w.write(body)
        if await read_reply(r) != 250:
            raise RuntimeError("message refused")
        samples.append((time.monotonic(), time.perf_counter() - t0))
        n += 1
    w.write(b"QUIT\r\n")
    await read_reply(r)
    w.close()


def cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and its children still running (a supervisor's workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent's pid
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds of each live thread of the process (the main thread's id is the pid)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        out[int(task.name)] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def cpu_split(pid: int, before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]],
              n: int) -> str:
    """Per message: the loop thread's user and system ms, and the other threads' (SQLite writer, offload) ms."""
    def used(tid: int) -> tuple[float, float]:
        u0, s0 = before.get(tid, (0.0, 0.0))
        u1, s1 = after.get(tid, (u0, s0))
        return u1 - u0, s1 - s0
    lu, ls = used(pid)
    others = [used(t) for t in after if t != pid]
    ou, os_ = sum(u for u, _ in others), sum(s for _, s in others)
    per = 1000 / n
    return f"loop {lu * per:.2f}+{ls * per:.2f}sys, threads {ou * per:.2f}+{os_ * per:.2f}sys"


async def load(label: str, port: int, rcpts: list[str], sessions: int, seconds: float,
               server_pid: int | None, workers: int | None = None) -> Result:
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    stop_at = start + WARMUP_SECONDS + seconds
    cpu0 = None
    threads0: dict[int, tuple[float, float]] = {}
    tasks = [asyncio.create_task(session(port, rcpts[i % len(rcpts)], stop_at, samples)) for i in range(sessions)]
    await asyncio.sleep(WARMUP_SECONDS)
    if server_pid:
        cpu0 = cpu_seconds(server_pid)
        threads0 = thread_cpu(server_pid)
    measured_from = time.monotonic()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - measured_from
    cpu = cpu_seconds(server_pid) - cpu0 if server_pid and cpu0 is not None else None
    threads1 = thread_cpu(server_pid) if server_pid else {}
    window = sorted(lat for t, lat in samples if t >= measured_from)
    n = len(window)
    p = (lambda q: window[min(n - 1, int(q * n))] * 1000) if n else (lambda q: float("nan"))
    return Result(label, workers, sessions, len(samples), n / elapsed, p(0.50), p(0.99),
                  cpu / n * 1000 if cpu is not None and n else None, None,
                  cpu_split(server_pid, threads0, threads1, n) if server_pid and n and (workers or 1) == 1 else "")


async def source_load(label: str, port: int, rcpts: list[str], sessions: int, messages: int,
                      server_pid: int | None, workers: int | None = None) -> Result:
    """`messages` over `sessions` smtp-source processes (one session, one recipient each), until all exit."""
    per = max(1, messages // sessions)
    cpu0 = cpu_seconds(server_pid) if server_pid else None
    threads0 = thread_cpu(server_pid) if server_pid else {}
    start = time.monotonic()
    procs = [await asyncio.create_subprocess_exec(
        SMTP_SOURCE, "-d", "-s", "1", "-m", str(per), "-l", str(MESSAGE_SIZE), "-f", "bench@load.example",
        "-t", rcpts[i % len(rcpts)], "-M", "load.example", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE) for i in range(sessions)]
    outs = [await p.communicate() for p in procs]
    elapsed = time.monotonic() - start
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0 or err:
            raise RuntimeError(f"smtp-source failed ({p.returncode}): {err.decode(errors='replace')[:500]}")
    n = per * sessions
    cpu = cpu_seconds(server_pid) - cpu0 if server_pid and cpu0 is not None else None
    return Result(label, workers, sessions, n, n / elapsed, float("nan"), float("nan"),
                  cpu / n * 1000 if cpu is not None else None, None,
                  # with workers the supervisor's threads are idle: its split would say nothing
                  cpu_split(server_pid, threads0, thread_cpu(server_pid), n) if server_pid and (workers or 1) == 1
                  else "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not start")


async def wait_serving(log: Path, workers: int, timeout: float = 60) -> None:
    """Until every worker has said it serves (the supervisor's port accepts before they do)."""
    want = f" of {workers})" if workers > 1 else "postroom serving:"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count(want) >= workers:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not start")


@contextlib.asynccontextmanager
async def serving(cfg: Path, port: int, workdir: Path, workers: int) -> AsyncIterator[int]:
    """`postroom serve --workers N` with this config until the block ends; yields its pid once all serve."""
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "mailserver.cli", "--config", str(cfg), "serve",
                             "--workers", str(workers)], cwd=ROOT, stdout=log, stderr=log)
    try:
        await wait_listening(port)
        await wait_serving(workdir / "serve.log", workers)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


async def postroom_run(backend: str, url: str, sessions: int, seconds: float, workdir: Path,
                       workers: int, messages: int | None = None) -> Result:
    port = free_port()
    cfg = workdir / "postroom.toml"
    cfg.write_text(f'[server]\nhostname = "mail.bench.test"\ndata_dir = "{workdir / "data"}"\nlog_level = "warning"\n'
                   f'[listen]\nsmtp = "127.0.0.1:{port}"\nsubmission = ""\nsubmissions = ""\n'
                   'imap = ""\nimaps = ""\nhttp = ""\n'
                   f'[storage]\nurl = "{url}"\n[queue]\nmx_lookup = false\n[dkim]\ndns_lookup = false\n')
    subprocess.run([sys.executable, "-m", "mailserver.cli", "--config", str(cfg), "init"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    config = config_mod.load(cfg)
    mb = await open_mailboxes(config.storage(), hasher=CHEAP_HASHER)
    await mb.directory.add_domain("bench.test")
    quota = config.get("limits", "default_quota_bytes")
    rcpts = [(await mb.add_account(f"user{i}@bench.test", password="x", quota_bytes=quota)).address
             for i in range(USERS)]
    async with serving(cfg, port, workdir, workers) as pid:
        if messages:
            res = await source_load(f"postroom/{backend}", port, rcpts, sessions, messages, pid, workers)
        else:
            res = await load(f"postroom/{backend}", port, rcpts, sessions, seconds, pid, workers)
        res.index_s, cpu = await index_catch_up(mb, pid)
        res.index_cpu_ms = cpu / res.sent * 1000 if res.sent else None
    stored = 0
    for a in rcpts:
        acct = await mb.directory.account(a)
        stored += len(await mb.store.messages((await mb.store.folder(acct, "INBOX")).ref))
    await mb.close()
    res.stored = stored
    return res


async def index_catch_up(mb, pid: int) -> tuple[float, float]:
    """(seconds, server CPU seconds) from now until no body waits for the search indexes."""
    start, cpu0 = time.monotonic(), cpu_seconds(pid)
    while True:
        async with mb.router.central.read() as conn:
            left = (await conn.execute(select(func.count()).select_from(t.blob_index_pending))).scalar()
        if not left or time.monotonic() - start > 300:
            return time.monotonic() - start, cpu_seconds(pid) - cpu0
        await asyncio.sleep(0.05)


def peer_maildirs() -> list[Path]:
    return [PEER_MAILDIRS / f"user{i}" / "Maildir" for i in PEER_USERS]


def clear_peer_mail() -> None:
    """A fresh mailbox per run for our benchmark users only (user1 holds the IMAP benchmark's folder)."""
    for md in peer_maildirs():
        for sub in ("new", "cur"):
            for f in (md / sub).glob("*"):
                f.unlink(missing_ok=True)


def peer_arrivals() -> list[tuple[float, float]]:
    """(send time, arrival time) of every benchmark message in the peers' maildirs."""
    out = []
    for md in peer_maildirs():
        for sub in ("new", "cur"):
            for f in (md / sub).glob("*"):
                try:
                    with open(f, "rb") as fh:
                        head = fh.read(1024)
                    arrived = f.stat().st_mtime
                except OSError:
                    continue
                m = SENT_AT.search(head)
                if m:
                    out.append((float(m.group(1)), arrived))
    return out


def peer_files() -> list[float]:
    """The arrival (modification) times of every message in the peers' maildirs."""
    out = []
    for md in peer_maildirs():
        for sub in ("new", "cur"):
            for f in (md / sub).glob("*"):
                try:
                    out.append(f.stat().st_mtime)
                except OSError:
                    continue
    return out


async def peer_source_run(sessions: int, messages: int) -> Result:
    """smtp-source against Postfix → Dovecot: the messages over the time until the last is in its maildir."""
    clear_peer_mail()
    rcpts = [f"user{i}@{PEER_DOMAIN}" for i in PEER_USERS]
    start_wall = time.time()
    smtp = await source_load("postfix+dovecot", PEER_PORT, rcpts, sessions, messages, None)
    deadline = time.monotonic() + 120
    while len(arrived := peer_files()) < smtp.sent and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    last = max(arrived, default=start_wall)
    return Result("postfix+dovecot", None, sessions, smtp.sent, len(arrived) / (last - start_wall),
                  float("nan"), float("nan"), None, len(arrived))


async def peer_run(sessions: int, seconds: float) -> Result:
    """The same load against Postfix → Dovecot, measured until the messages are in the maildirs."""
    clear_peer_mail()
    rcpts = [f"user{i}@{PEER_DOMAIN}" for i in PEER_USERS]
    start_wall = time.time()
    smtp = await load("postfix+dovecot", PEER_PORT, rcpts, sessions, seconds, None)
    measured_from = start_wall + WARMUP_SECONDS
    deadline = time.monotonic() + 120
    while True:
        arrivals = peer_arrivals()
        if len(arrivals) >= smtp.sent or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    # Postfix answers 250 once its queue file is synced and delivers afterwards, so under this load its
    # queue grows and drains after the load stops. End to end is then: every message sent, from the
    # first send until the last one is in its maildir; latency is send -> maildir, queueing included.
    last = max((t1 for _, t1 in arrivals), default=start_wall)
    lat = sorted(t1 - t0 for t0, t1 in arrivals if t0 >= measured_from)
    n = len(lat)
    p = (lambda q: lat[min(n - 1, int(q * n))] * 1000) if n else (lambda q: float("nan"))
    return Result("postfix+dovecot", None, sessions, smtp.sent, len(arrivals) / (last - start_wall), p(0.50), p(0.99),
                  None, len(arrivals))


def peers_running() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", PEER_PORT), timeout=1):
            return True
    except OSError:
        return False


def median(runs: list[Result]) -> Result:
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


async def fresh_run(backend: str, pg, sessions: int, seconds: float, workers: int,
                    messages: int | None = None) -> Result:
    """One run on a fresh data directory (and a fresh PostgreSQL database)."""
    work = Path(tempfile.mkdtemp(prefix="postroom-bench-"))
    try:
        if backend == "sqlite":
            url = f"sqlite:///{work}/data/postroom.db"
        else:
            name = "bench_" + uuid.uuid4().hex[:8]
            subprocess.run([*pg.as_user, f"{pg.bindir}/createdb", "-h", "127.0.0.1", "-p", str(pg.port),
                            "-U", "postgres", name], check=True)
            url = pg.url(name)
        return await postroom_run(backend, url, sessions, seconds, work, workers, messages)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_result(r: Result, base: Result | None = None) -> None:
    cpu = f"{r.cpu_ms:6.2f}" if r.cpu_ms is not None else "     -"
    check = "" if r.stored is None else ("  ok" if r.stored >= r.sent else f"  MISSING {r.sent - r.stored}")
    ratio = f"  {r.rate / base.rate:5.2f}x postfix" if base and base.rate else ""
    wk = f"{r.workers:3d}" if r.workers else "  -"
    def ms(v: float) -> str:
        return f"{v:8.2f}" if v == v else f"{'-':>8}"  # NaN: smtp-source gives no latencies
    print(f"{r.label:18} {wk} {r.sessions:5d} {r.rate:9.1f} {ms(r.p50_ms)} {ms(r.p99_ms)} {cpu}  "
          f"{r.sent:7d}{check}{ratio}{'  cpu ms: ' + r.cpu_split if r.cpu_split else ''}"
          + (f"  then indexing {r.index_s:.1f} s, {r.index_cpu_ms:.2f} cpu ms" if r.index_cpu_ms is not None else ""),
          flush=True)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run (after 1 s warm-up)")
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 20, 50])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="Postroom worker processes (serve --workers); one table per count")
    ap.add_argument("--backends", nargs="*", default=["sqlite", "pg"], choices=["sqlite", "pg"])
    ap.add_argument("--no-peers", action="store_true", help="do not run the load against Postfix/Dovecot")
    ap.add_argument("--repeat", type=int, default=1, help="runs per point; the median run (by msg/s) is shown")
    ap.add_argument("--client", choices=["python", "smtp-source"],
                    default="smtp-source" if os.access(SMTP_SOURCE, os.X_OK) else "python",
                    help="the load generator (smtp-source when Postfix's is installed)")
    ap.add_argument("--messages", type=int, default=3000, help="messages per point with --client smtp-source")
    args = ap.parse_args()
    messages = args.messages if args.client == "smtp-source" else None
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start (other work on the machine"
          " skews every figure; compare runs made together); client: "
          + (f"smtp-source, {args.messages} messages a point" if messages else f"Python, {args.seconds:g} s a point"))
    print(f"{'server':18} {'wk':>3} {'sess':>5} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms':>6}  {'sent':>7}")
    peer: dict[int, Result] = {}
    if not args.no_peers and peers_running() and PEER_MAILDIRS.exists():
        for n in args.sessions:
            peer[n] = median([await (peer_source_run(n, messages) if messages else peer_run(n, args.seconds))
                              for _ in range(args.repeat)])
            print_result(peer[n])
        clear_peer_mail()
    pg = None
    try:
        for backend in args.backends:
            if backend == "pg" and pg is None:
                pg = pgserver.start(durable=True)  # production settings: every commit on disk
                if pg is None:
                    print("PostgreSQL is not installed; skipping pg", file=sys.stderr)
                    continue
            for workers in args.workers:
                for n in args.sessions:
                    runs = [await fresh_run(backend, pg, n, args.seconds, workers, messages)
                            for _ in range(args.repeat)]
                    print_result(median(runs), peer.get(n))
    finally:
        if pg is not None:
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
