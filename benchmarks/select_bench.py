"""SELECT benchmark: a 10,000-message folder opened cold and warm, on SQLite and PostgreSQL, with Dovecot's figures beside.

Usage: .venv/bin/python benchmarks/select_bench.py [--messages 10000] [--rounds 3] [--backends sqlite pg]
                                                 [--tree OTHER_CHECKOUT ...] [--no-dovecot]

Each round starts a fresh `postroom serve` process on a store holding three folders of the same
messages, logs in and times, from sending the command to reading its tagged reply:
- cold: the first SELECT of INBOX in the fresh process (nothing cached in memory, nothing compiled
  yet; the folder's saved state, mailboxes.folderstate, is there: the server saved it when it first read it);
- cold folder: then the first SELECT of the second folder (the process is warm, the folder is not);
- unsaved folder: then the first SELECT of the third, whose saved state is deleted before each round
  (a folder no server has read since it grew: every message's row is read);
- warm: ten SELECTs of INBOX after a STORE on every message (each reads what changed since);
- EXAMINE: ten EXAMINEs of INBOX.
Beside the wall time it reads the server process's CPU time (all threads, /proc/PID/task/*/schedstat),
which a busy machine disturbs less. ``--tree`` runs the same rounds with the server taken from another
checkout (e.g. ``git worktree add /tmp/before main``), alternating with this one, and prints ratios.
When Dovecot runs as the loopback peer of ../shared/peers (127.0.0.1:10143, user1 / pass) the same
INBOX is given to it (reused when it holds the same count) and timed the same way: cold is the
first SELECT in a new connection (Dovecot starts a process per connection and reads its index files).

2026-12-06, with saved folder states (mailboxes.folderstate), 7 rounds, Dovecot cold 13.8 ms in the same run:
SQLite cold 8.5 ms (0.61x Dovecot), cold folder 4.9, unsaved folder 10.7, warm 2.8; PostgreSQL cold 11.0 ms
wall (0.80x), cold folder 6.6, unsaved folder 10.9, warm 3.7. Before them (the same day, whole reads):
SQLite cold 16.3 (1.16x), cold folder 10.6; PostgreSQL cold 32-37 ms wall.

Earlier, 2026-12-06 (SQLite, 7 rounds): cold 22.5 ms, cold folder 15.7, warm 4.9 against Dovecot's cold 17-18.5
(its every connection is a fresh process: compare it with "cold folder", a new connection to a running
server). Opening every pooled reader and compiling the SELECT's statements at start measured no gain
(0.98, not kept): the first SELECT of a fresh process pays first-execution costs of the process itself.
Before this date the store was measured while the server still indexed its 20,000 bodies in the
background (populate now indexes them first): cold figures of 16-240 ms in one session came from that.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from argon2 import PasswordHasher  # noqa: E402
from imap_bench import (  # noqa: E402
    DOVECOT, PASSWORD, Client, Server, dovecot_populate, dovecot_up, free_port, make_message, write_config,
)

from sqlalchemy import text  # noqa: E402

from mailboxes.db import open_database  # noqa: E402
from mailboxes.ingest import prepare  # noqa: E402
from mailboxes.partitions import StorageConfig  # noqa: E402
from mailboxes.service import open_mailboxes  # noqa: E402
from mailboxes.store import Delivery  # noqa: E402
from tests.support import pgserver  # noqa: E402

WARM_RUNS = 10
FOLDERS = ("INBOX", "Other", "Unsaved")


def cpu_ms(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far, in milliseconds."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass  # a thread that ended meanwhile
    return total / 1e6


async def populate(url: str, n: int) -> None:
    mb = await open_mailboxes(StorageConfig(url=url), hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                                            parallelism=1))
    try:
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("bench@city.test", password=PASSWORD)
        for name in FOLDERS[1:]:
            await mb.store.create_folder(acct, name)
        rng = random.Random(1)
        for i in range(0, n, 500):
            batch = [prepare(make_message(k, rng)) for k in range(i, min(n, i + 500))]
            await asyncio.gather(*(mb.store.deliver(Delivery(p, tuple((acct, f) for f in FOLDERS)))
                                   for p in batch))
        # Index now: a server started on a backlog indexes it in the background (large write
        # transactions and CPU beside the first SELECT: 2026-12-06 the cold figure varied 16-240 ms).
        for name in await mb.store.partitions_of(acct):
            await mb.store.catch_up_index(name)
        # Save the folders' states, as a server does at their first SELECT (mailboxes.folderstate): every
        # round then starts alike. "Unsaved" loses its saved state before each round.
        for name in FOLDERS:
            await mb.store.listing_state((await mb.store.folder(acct, name)).ref)
        await mb.store.states.idle()
    finally:
        await mb.close()


async def timed(c: Client, command: str, pid: int | None) -> tuple[float, float]:
    c0 = cpu_ms(pid) if pid else 0.0
    t0 = time.perf_counter()
    await c.cmd(command)
    wall = (time.perf_counter() - t0) * 1000
    return wall, (cpu_ms(pid) - c0) if pid else float("nan")


def newest_imap_process() -> int | None:
    """The pid of Dovecot's newest ``imap`` process: the one serving the connection just logged in."""
    best: tuple[int, int] | None = None
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if Path(f"/proc/{d}/comm").read_text().strip() != "imap":
                continue
            start = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            continue
        if best is None or start >= best[0]:
            best = (start, int(d))
    return best[1] if best else None


async def forget_saved(url: str, name: str) -> None:
    """Delete the saved state (mailboxes.folderstate) of the folder ``name``: its next SELECT reads it whole."""
    db = open_database(url)
    try:
        async with db.write() as conn:
            await conn.execute(text("DELETE FROM folder_states WHERE folder_id IN "
                                    "(SELECT id FROM folders WHERE name = :n)"), {"n": name})
    finally:
        await db.dispose()


async def one_round(host: str, port: int, user: str, password: str, pid: int | None,
                    other: str | None, unsaved: str | None = None) -> dict[str, tuple[float, float]]:
    """(wall ms, server CPU ms) per figure; medians for the repeated ones. ``pid`` None: Dovecot's imap process."""
    c = await Client.connect(host, port)
    await c.cmd(f"LOGIN {user} {password}")
    if pid is None:
        pid = newest_imap_process()
    out = {"cold": await timed(c, "SELECT INBOX", pid)}
    if other:
        out["cold folder"] = await timed(c, f"SELECT {other}", pid)
    if unsaved:
        out["unsaved folder"] = await timed(c, f"SELECT {unsaved}", pid)
    if other or unsaved:
        await c.cmd("SELECT INBOX")
    await c.cmd("STORE 1:* +FLAGS.SILENT (\\Flagged)")
    await c.cmd("STORE 1:* -FLAGS.SILENT (\\Flagged)")
    for name, command in (("warm", "SELECT INBOX"), ("EXAMINE", "EXAMINE INBOX")):
        runs = [await timed(c, command, pid) for _ in range(WARM_RUNS)]
        out[name] = (statistics.median(w for w, _ in runs), statistics.median(u for _, u in runs))
    await c.cmd("LOGOUT")
    await c.close()
    return out


FIGURES = ("cold", "cold folder", "unsaved folder", "warm", "EXAMINE")


def show(label: str, rounds: list[dict[str, tuple[float, float]]], base: dict[str, tuple[float, float]] | None,
         base_name: str) -> dict[str, tuple[float, float]]:
    med = {k: (statistics.median(r[k][0] for r in rounds), statistics.median(r[k][1] for r in rounds))
           for k in FIGURES if k in rounds[0]}
    for k, (wall, cpu) in med.items():
        line = f"  {label:<22} {k:<14} {wall:8.1f} ms wall  {cpu:8.1f} ms server CPU"
        if base and k in base and base[k][0] > 0:
            line += f"   {base_name} {base[k][0]:7.1f} ms   ratio {wall / base[k][0]:.2f}"
        print(line, flush=True)
    return med


async def backend_url(backend: str, data: Path, pg) -> str:
    if backend == "sqlite":
        return f"sqlite:///{data}/postroom.db"
    name = "select_" + uuid.uuid4().hex[:8]
    subprocess.run([*pg.as_user, f"{pg.bindir}/createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                    name], check=True)
    return pg.url(name)


async def amain(args: argparse.Namespace) -> None:
    trees = [("this", ROOT)] + [(f"tree{i + 1}", Path(p).resolve()) for i, p in enumerate(args.tree)]
    for i, (_, p) in enumerate(trees[1:]):
        print(f"tree{i + 1} = {p}")
    dove = None
    if args.dovecot and dovecot_up():
        print("populating Dovecot (user1) ...", flush=True)
        await dovecot_populate(args.messages)
        await one_round(*DOVECOT, None, None)  # it builds its index and cache files
        dove = [await one_round(*DOVECOT, None, None) for _ in range(args.rounds)]
        print(f"\nDovecot, {args.messages}-message INBOX (median of {args.rounds} rounds)")
        dove_med = show("dovecot", dove, None, "")
    else:
        dove_med = None
        print("(no Dovecot on 127.0.0.1:10143: Postroom figures only; see ../shared/peers/README.md)")
    pg = None
    try:
        for backend in args.backends:
            if backend == "pg":
                pg = pgserver.start(durable=True)  # production settings: every commit on disk
                if pg is None:
                    print("PostgreSQL is not installed; skipping pg")
                    continue
            data = Path(tempfile.mkdtemp(prefix="selectbench-"))
            try:
                url = await backend_url(backend, data, pg)
                t0 = time.perf_counter()
                await populate(url, args.messages)
                print(f"\n{backend}: built {args.messages} messages x {len(FOLDERS)} folders in "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
                results: dict[str, list] = {name: [] for name, _ in trees}
                for _ in range(args.rounds):  # alternate the trees: load on the machine hits both alike
                    for name, tree in trees:
                        await forget_saved(url, FOLDERS[2])
                        port = free_port()
                        server = Server(write_config(data, port, url), port, tree)
                        try:
                            results[name].append(await one_round("127.0.0.1", server.port, "bench@city.test",
                                                                 PASSWORD, server.proc.pid, FOLDERS[1],
                                                                 FOLDERS[2]))
                        finally:
                            server.stop()
                print(f"Postroom on {backend}, {args.messages}-message folder (median of {args.rounds} rounds)")
                for name, _ in trees:
                    show(f"{backend} {name}", results[name], dove_med, "dovecot")
                for name, _ in trees[1:]:
                    print(f"  this / {name}, wall (server CPU): " + "  ".join(
                        f"{k} {ratio(results['this'], results[name], k, 0):.2f} "
                        f"({ratio(results['this'], results[name], k, 1):.2f})" for k in FIGURES
                        if k in results[name][0]))
            finally:
                shutil.rmtree(data, ignore_errors=True)
    finally:
        if pg is not None:
            pg.stop()


def ratio(a: list, b: list, figure: str, which: int) -> float:
    """Median of one figure (0: wall, 1: server CPU) over ``a``'s rounds against ``b``'s."""
    below = statistics.median(r[figure][which] for r in b)
    return statistics.median(r[figure][which] for r in a) / below if below else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backends", nargs="*", default=["sqlite", "pg"], choices=["sqlite", "pg"])
    p.add_argument("--tree", nargs="*", default=[], help="other checkouts to run the server from, for ratios")
    p.add_argument("--no-dovecot", dest="dovecot", action="store_false")
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
