"""The audit log's cost: chained appends per second (one per transaction, and buffered), the ms a login adds, and verification.

Usage: .venv/bin/python benchmarks/audit_bench.py [--url sqlite:///...] [--n 500] [--logins 500] [--verify 100000]

Runs on SQLite in a temporary folder unless --url names a database. "added ms per login" is the
mean time of Authenticator.login (credential cached: the common case of a mail client that logs in
again) with the audit entry, minus the same without it (audit_soon replaced by a no-op).
"verify" walks a chain of --verify entries as `postroom audit verify` does (auditlog.verify, on the
loop) and as the console does (auditlog.verify_off_loop: hashing in a thread, a pause per batch),
each with the longest event-loop stall seen by a 5 ms ticker meanwhile (and, for scale, while idle).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailboxes import auditlog  # noqa: E402
from mailboxes.partitions import StorageConfig  # noqa: E402
from mailboxes.service import open_mailboxes  # noqa: E402
from mailserver.auth import Authenticator  # noqa: E402
from tests.conftest import FAST_HASHER  # noqa: E402


async def _stall_while(job) -> tuple[float, float, float, object]:
    """(seconds the job took, the longest and the p99 event-loop stall in ms meanwhile, its result)."""
    lags: list[float] = []
    done = False

    async def tick() -> None:
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t - 0.005)
    ticker = asyncio.create_task(tick())
    t0 = time.perf_counter()
    result = await job
    took = time.perf_counter() - t0
    done = True
    await ticker
    lags.sort()
    return took, lags[-1] * 1000, lags[len(lags) * 99 // 100] * 1000, result


async def _verify_figures(mb, v: int) -> None:
    db = mb.router.central
    now = datetime.now(timezone.utc)
    for start in range(0, v, 5000):
        async with db.write() as conn:
            await auditlog.append_many(conn, [(now, "bench", "bench.verify", str(i), "{}")
                                              for i in range(start, min(v, start + 5000))])

    async def on_loop():
        async with db.read() as conn:
            return await auditlog.verify(conn, [])
    _, idle, idle99, _ = await _stall_while(asyncio.sleep(2))
    print(f"event-loop stall while idle (the machine's noise): longest {idle:.1f} ms, p99 {idle99:.1f} ms")
    for name, job in (("on the loop (CLI)", on_loop()), ("off the loop (console)", auditlog.verify_off_loop(db, []))):
        took, stall, p99, (count, problem) = await _stall_while(job)
        assert problem is None
        print(f"verify {name}: {count} entries in {took:.2f} s ({count / took:.0f}/s), "
              f"event-loop stall longest {stall:.1f} ms, p99 {p99:.1f} ms")


async def main(url: str, n: int, logins: int, verify: int) -> None:
    mb = await open_mailboxes(StorageConfig(url=url), hasher=FAST_HASHER)
    try:
        await mb.directory.add_domain("city.test")
        await mb.add_account("bench@city.test", password="pw")
        t0 = time.perf_counter()
        for i in range(n):
            await mb.directory.audit("bench", "bench.append", str(i))
        one = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(n * 4):
            await mb.directory.audit_soon("bench", "bench.buffered", str(i))
        await mb.directory.audit_buffer.flush()
        buffered = n * 4 / (time.perf_counter() - t0)
        auth = Authenticator.create(mb.directory)
        await auth.login("bench@city.test", "pw", ip="127.0.0.1", protocol="imap")  # fills the credential cache

        async def timed() -> float:
            t = time.perf_counter()
            for _ in range(logins):
                await auth.login("bench@city.test", "pw", ip="127.0.0.1", protocol="imap")
            await mb.directory.audit_buffer.flush()
            return (time.perf_counter() - t) / logins * 1000
        with_audit = await timed()
        real = mb.directory.audit_soon

        async def nothing(*a, **k) -> None:
            return None
        mb.directory.audit_soon = nothing
        without = await timed()
        mb.directory.audit_soon = real
        print(f"appends/s one per transaction: {one:.0f}")
        print(f"appends/s buffered (batches of 200): {buffered:.0f}")
        print(f"login (cached credential) {without:.3f} ms without audit, {with_audit:.3f} ms with: "
              f"added {with_audit - without:.3f} ms per login (flush included)")
        if verify:
            await _verify_figures(mb, verify)
    finally:
        await mb.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--logins", type=int, default=500)
    p.add_argument("--verify", type=int, default=100_000, help="entries in the chain verified (0: skip)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(main(a.url or f"sqlite:///{d}/bench.db", a.n, a.logins, a.verify))
