#!/usr/bin/env python3
"""Several processes writing one SQLite store (serve --workers on SQLite): deliveries/s, latency, CPU, without SMTP.

P processes share C concurrent deliverers (4 KiB messages, each deliverer its
own account) for S seconds, each process with its own engines and group
committer, as `postroom serve --workers P` runs them. SQLite lets one
transaction write at a time, so the processes take turns on its write lock
(WAL, busy timeout); this shows what the turns cost: compare P=1 with P=2 at
the same C (messages per transaction fall, the wait for the lock shows in p99).

    .venv/bin/python benchmarks/sqlite_writers_bench.py [--procs 1 2] [--sessions 20] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from argon2 import PasswordHasher  # noqa: E402

from mailboxes.ingest import prepare  # noqa: E402
from mailboxes.partitions import StorageConfig  # noqa: E402
from mailboxes.service import open_mailboxes  # noqa: E402
from mailboxes.store import Delivery  # noqa: E402

CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
MESSAGE = (b"From: Load <bench@load.example>\r\nTo: <u@city.test>\r\nSubject: benchmark\r\n\r\n"
           + b"The quick brown fox jumps over the lazy dog; 0123456789.\r\n" * 70)


def child(url: str, accounts: list[str], seconds: float, out: mp.Queue) -> None:
    async def run() -> tuple[list[float], float, int]:
        mb = await open_mailboxes(StorageConfig(url=url), hasher=CHEAP_HASHER, migrate=False)
        accts = [await mb.directory.account(a) for a in accounts]
        latencies: list[float] = []
        stop_at = time.monotonic() + seconds

        async def deliverer(acct) -> None:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                await mb.store.deliver(Delivery(prepare(MESSAGE), ((acct, "INBOX"),)))
                latencies.append(time.perf_counter() - t0)

        cpu0 = time.process_time()
        await asyncio.gather(*(deliverer(a) for a in accts))
        cpu = time.process_time() - cpu0
        commits = sum(c.batches for c in mb.store._committers.values())  # noqa: SLF001 - a benchmark's peek
        await mb.close()
        return latencies, cpu, commits

    out.put(asyncio.run(run()))


async def prepare_store(url: str, n: int) -> list[str]:
    mb = await open_mailboxes(StorageConfig(url=url), hasher=CHEAP_HASHER)
    await mb.directory.add_domain("city.test")
    out = [(await mb.add_account(f"u{i}@city.test", password="x")).address for i in range(n)]
    await mb.close()
    return out


def run(procs: int, sessions: int, seconds: float) -> str:
    url = f"sqlite:///{tempfile.mkdtemp(prefix='postroom-writers-')}/postroom.db"
    accounts = asyncio.run(prepare_store(url, sessions))
    ctx = mp.get_context("spawn")  # fresh interpreters, as the supervisor starts its workers
    out = ctx.Queue()
    children = [ctx.Process(target=child, args=(url, accounts[i::procs], seconds, out)) for i in range(procs)]
    for c in children:
        c.start()
    results = [out.get() for _ in children]
    for c in children:
        c.join()
    lat = sorted(x for r in results for x in r[0])
    n, cpu, commits = len(lat), sum(r[1] for r in results), sum(r[2] for r in results)
    return (f"{procs:5d} {sessions:5d} {n / seconds:9.1f} {lat[n // 2] * 1000:8.2f} {lat[int(n * 0.99)] * 1000:8.2f} "
            f"{cpu / n * 1000:7.2f} {n / max(commits, 1):9.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--sessions", type=int, nargs="+", default=[20])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    print(f"{'procs':>5} {'sess':>5} {'deliv/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms':>7} {'msg/txn':>9}")
    for sessions in args.sessions:
        for procs in args.procs:
            print(run(procs, sessions, args.seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
