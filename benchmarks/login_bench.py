"""Login benchmark: 500 IMAP clients logging in at once, and the median time of one LOGIN, cold and warm.

Usage: .venv/bin/python benchmarks/login_bench.py [--clients 500] [--users 50] [--runs 20] [--no-dovecot]
       [--argon2 TIME,MEMORY_KIB,LANES]   (default: the configured default cost, OWASP 2,19456,1)

The server runs as a separate process (`postroom serve`) on loopback with imap_bench's settings
and the default [auth] and auth throttle settings (so the throttle's per-address slots are in
play: every client comes from 127.0.0.1). Each client is its own connection (asyncio raw sockets): connect, read the greeting,
LOGIN, read the tagged reply, LOGOUT.

- storm, cold: a fresh server process; `--clients` connections at once over `--users` accounts
  (500 over 50: ten connections per account, as phones and Outlook open several). Every
  account's password is verified once (Argon2); its other connections share that check.
- storm, warm: the same again on the same server: every login is in the credential cache.
- LOGIN, cold: sequential first logins of accounts never logged in (one Argon2 verification each).
- LOGIN, warm: sequential logins of one account already logged in (cache hit: one read, no hash).

When Dovecot runs as the loopback peer of ../shared/peers (127.0.0.1:10143, user1..user50 / pass;
its passwords are stored {PLAIN}, so it hashes nothing) the same storm and sequential logins run
against it and ratios are printed; otherwise that comparison is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402

from mailboxes.passwords import DEFAULT_COST  # noqa: E402

from benchmarks import imap_bench  # noqa: E402
from benchmarks.imap_bench import Server, dovecot_up, free_port, raise_fd_limit  # noqa: E402
from mailboxes.partitions import StorageConfig  # noqa: E402
from mailboxes.service import open_mailboxes  # noqa: E402

PASSWORD = "bench-login-pw"
DOVECOT_HOST, DOVECOT_PORT, DOVECOT_PASSWORD = "127.0.0.1", 10143, "pass"
ISSUE_DOVECOT = (7.5, 15)  # storm seconds, median LOGIN ms, as issue 7 reported them


def write_config(data: Path, port: int, argon2: tuple[int, int, int] | None) -> Path:
    """imap_bench's server configuration, plus an [auth] cost when one is asked for."""
    cfg = imap_bench.write_config(data, port)
    if argon2:
        with cfg.open("a") as f:
            f.write(f"[auth]\nargon2_time_cost = {argon2[0]}\nargon2_memory_cost = {argon2[1]}\n"
                    f"argon2_parallelism = {argon2[2]}\n")
    return cfg


async def populate(data: Path, users: int, cold: int, argon2: tuple[int, int, int] | None) -> None:
    """Accounts storm0..storm{users-1} and cold0..cold{cold-1}, hashed at the server's cost."""
    hasher = PasswordHasher(*argon2) if argon2 else PasswordHasher(**DEFAULT_COST)
    mb = await open_mailboxes(StorageConfig(url=f"sqlite:///{data}/postroom.db"), hasher=hasher)
    try:
        await mb.directory.add_domain("city.test")
        names = [f"storm{i}" for i in range(users)] + [f"cold{i}" for i in range(cold)]
        for i in range(0, len(names), 16):  # the hashes run in the directory's bounded pool
            await asyncio.gather(*(mb.add_account(f"{n}@city.test", password=PASSWORD) for n in names[i:i + 16]))
    finally:
        await mb.close()


async def one_login(host: str, port: int, user: str, password: str) -> float:
    """Seconds from sending LOGIN to its tagged OK (raises on NO/BAD)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await reader.readuntil(b"\r\n")  # greeting
        t0 = time.perf_counter()
        writer.write(f"a LOGIN {user} {password}\r\n".encode())
        while True:
            line = await reader.readuntil(b"\r\n")
            if line.startswith(b"a "):
                break
        took = time.perf_counter() - t0
        if not line.startswith(b"a OK"):
            raise RuntimeError(f"{user}: {line!r}")
        writer.write(b"z LOGOUT\r\n")
        await writer.drain()
        return took
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def storm(host: str, port: int, users: list[str], password: str, clients: int,
                timeout: float = 600.0) -> tuple[float, float]:
    """(seconds until every client is logged in, median LOGIN seconds) for `clients` connections at once."""
    t0 = time.perf_counter()
    times = await asyncio.wait_for(asyncio.gather(*(one_login(host, port, users[k % len(users)], password)
                                                    for k in range(clients))), timeout)
    return time.perf_counter() - t0, statistics.median(times)


async def sequential(host: str, port: int, users: list[str], password: str) -> float:
    """Median LOGIN seconds, one client after the other."""
    return statistics.median([await one_login(host, port, u, password) for u in users])


def ratio(ours: float, peer: float | None) -> str:
    return f"   dovecot {peer * 1000:9.1f} ms   ratio {ours / peer:.3g}" if peer else ""


async def amain(args: argparse.Namespace, data: Path) -> None:
    raise_fd_limit()
    argon2 = tuple(int(x) for x in args.argon2.split(",")) if args.argon2 else None
    cost = "t=%d m=%d KiB p=%d" % (argon2 or tuple(DEFAULT_COST.values()))
    port = free_port()
    cfg = write_config(data, port, argon2)
    print(f"building {args.users + args.runs} accounts (Argon2id {cost}) in {data} ...", flush=True)
    await populate(data, args.users, args.runs, argon2)
    storm_users = [f"storm{i}@city.test" for i in range(args.users)]
    server = Server(cfg, port)
    try:
        cold_storm = await storm("127.0.0.1", port, storm_users, PASSWORD, args.clients)
        warm_storm = await storm("127.0.0.1", port, storm_users, PASSWORD, args.clients)
        cold_one = await sequential("127.0.0.1", port, [f"cold{i}@city.test" for i in range(args.runs)], PASSWORD)
        warm_one = await sequential("127.0.0.1", port, [storm_users[0]] * args.runs, PASSWORD)
    finally:
        server.stop()

    peer: dict[str, float] | None = None
    if args.dovecot and dovecot_up():
        dusers = [f"user{i}" for i in range(1, min(args.users, 50) + 1)]
        peer = {"storm": (await storm(DOVECOT_HOST, DOVECOT_PORT, dusers, DOVECOT_PASSWORD, args.clients))[0],
                "first": await sequential(DOVECOT_HOST, DOVECOT_PORT, dusers[:args.runs], DOVECOT_PASSWORD),
                "again": await sequential(DOVECOT_HOST, DOVECOT_PORT, [dusers[0]] * args.runs, DOVECOT_PASSWORD)}

    print(f"\nPostroom IMAP LOGIN, Argon2id {cost}, {os.cpu_count()} cores; "
          f"{args.clients} clients over {args.users} accounts from 127.0.0.1")
    print(f"  storm, cold (fresh process)   {cold_storm[0]:8.2f} s  (median LOGIN {cold_storm[1] * 1000:.0f} ms)"
          + (f"   dovecot {peer['storm']:6.2f} s   ratio {cold_storm[0] / peer['storm']:.3g}" if peer else ""))
    print(f"  storm, warm (cached)          {warm_storm[0]:8.2f} s  (median LOGIN {warm_storm[1] * 1000:.0f} ms)"
          + (f"   dovecot {peer['storm']:6.2f} s   ratio {warm_storm[0] / peer['storm']:.3g}" if peer else ""))
    print(f"  LOGIN, cold (median of {args.runs})    {cold_one * 1000:8.1f} ms"
          + ratio(cold_one, peer and peer["first"]))
    print(f"  LOGIN, warm (median of {args.runs})    {warm_one * 1000:8.1f} ms"
          + ratio(warm_one, peer and peer["again"]))
    if peer is None:
        print("  Dovecot: skipped (--no-dovecot, or not running on 127.0.0.1:10143; see ../shared/peers/README.md)")
        print(f"  (for orientation only, not a same-run ratio: issue 7 measured Dovecot at {ISSUE_DOVECOT[0]} s for "
              f"the 500-client storm and {ISSUE_DOVECOT[1]} ms median LOGIN on a 2-core machine of this class)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--runs", type=int, default=20, help="sequential logins per median (and cold accounts)")
    p.add_argument("--argon2", default="", help="TIME,MEMORY_KIB,LANES; default: the configured default")
    p.add_argument("--no-dovecot", dest="dovecot", action="store_false")
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    args = p.parse_args()
    data = Path(tempfile.mkdtemp(prefix="loginbench-"))
    try:
        asyncio.run(amain(args, data))
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
