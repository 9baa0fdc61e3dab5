"""The audit log's cost: chained appends per second (one per transaction, and buffered) and the ms a login adds.

Usage: .venv/bin/python benchmarks/audit_bench.py [--url sqlite:///...] [--n 500] [--logins 500]

Runs on SQLite in a temporary folder unless --url names a database. "added ms per login" is the
mean time of Authenticator.login (credential cached: the common case of a mail client that logs in
again) with the audit entry, minus the same without it (audit_soon replaced by a no-op).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailboxes.partitions import StorageConfig  # noqa: E402
from mailboxes.service import open_mailboxes  # noqa: E402
from mailserver.auth import Authenticator  # noqa: E402
from tests.conftest import FAST_HASHER  # noqa: E402


async def main(url: str, n: int, logins: int) -> None:
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
    finally:
        await mb.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--logins", type=int, default=500)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(main(a.url or f"sqlite:///{d}/bench.db", a.n, a.logins))
