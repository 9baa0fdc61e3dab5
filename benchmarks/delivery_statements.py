#!/usr/bin/env python3
"""SQL statements per delivered message: one SMTP session sends N messages to one local recipient, and every statement any engine runs is counted and listed.

The server is started in-process (as the SMTP tests start it) on SQLite or
PostgreSQL; the first messages warm the caches and are not counted.

    .venv/bin/python benchmarks/delivery_statements.py [--messages 50] [--backend sqlite|pg] [--settings]

--settings gives the recipient a rule (that matches nothing): the cost of the
per-account settings hook for an account that has some.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from tests.protocol.smtp.support import RawClient, make_config, running  # noqa: E402
from tests.conftest import _create_pg_database  # noqa: E402
from tests.support import pgserver  # noqa: E402

WARMUP = 5
_IN_LIST = re.compile(r"\((?:\?|\$\d+|%\([^)]*\)s)(?:, (?:\?|\$\d+|%\([^)]*\)s))*\)")


def shape(sql: str) -> str:
    """A statement's text on one line, its IN lists and VALUES folded (so batches count as one shape)."""
    one = " ".join(sql.split())
    return _IN_LIST.sub("(…)", one)[:160]


async def wal_lsn(url: str) -> int | None:
    """PostgreSQL's current WAL position in octets (None on SQLite)."""
    if not url.startswith("postgresql"):
        return None
    import asyncpg
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'"))
    finally:
        await conn.close()


async def measure(url: str, tmp: Path, n: int, settings: bool = False,
                  totals: dict | None = None) -> tuple[collections.Counter, collections.Counter]:
    """(count, seconds) of each statement shape over n messages; ``totals`` gets the wall time and WAL octets."""
    seen: collections.Counter = collections.Counter()
    spent: collections.Counter = collections.Counter()
    counting = False
    started: dict[int, float] = {}

    def on_execute(_conn, cursor, statement, parameters, _context, executemany):  # noqa: ANN001
        if counting:
            seen[("many " if executemany else "") + shape(statement)] += 1
            started[id(cursor)] = time.perf_counter()

    def on_done(_conn, cursor, statement, parameters, _context, executemany):  # noqa: ANN001
        t0 = started.pop(id(cursor), None)
        if t0 is not None:
            spent[("many " if executemany else "") + shape(statement)] += time.perf_counter() - t0

    event.listen(Engine, "before_cursor_execute", on_execute)
    event.listen(Engine, "after_cursor_execute", on_done)
    try:
        async with running(make_config(tmp / "data", url)) as inst:
            if settings:
                li = await inst.mb.directory.account("li.na@city.test")
                await inst.mb.settings.add_rule(li.id, "subject", "no such subject", "seen")
            c = await RawClient.connect(inst.port())
            await c.cmd("EHLO load.example")
            body = (b"From: a@load.example\r\nTo: li.na@city.test\r\nSubject: s\r\n\r\n" +
                    b"The quick brown fox jumps over the lazy dog.\r\n" * 90)
            for i in range(WARMUP + n):
                if i == WARMUP:
                    lsn = await wal_lsn(url)
                    t0 = time.perf_counter()
                    counting = True
                for line in ("MAIL FROM:<a@load.example>", "RCPT TO:<li.na@city.test>", "DATA"):
                    code, text = await c.cmd(line)
                    assert code in (250, 354), (line, code, text)
                code, text = await c.cmd(body + b".")
                assert code == 250, text
            counting = False
            if totals is not None:
                totals["seconds"] = time.perf_counter() - t0
                end = await wal_lsn(url)
                totals["wal"] = None if lsn is None or end is None else end - lsn
            await c.cmd("QUIT")
            await c.close()
    finally:
        event.remove(Engine, "before_cursor_execute", on_execute)
        event.remove(Engine, "after_cursor_execute", on_done)
    return seen, spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--backend", choices=["sqlite", "pg"], default="sqlite")
    ap.add_argument("--settings", action="store_true", help="the recipient has a rule")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="postroom-stmts-"))
    pg = None
    if args.backend == "sqlite":
        url = f"sqlite:///{tmp}/postroom.db"
    else:
        pg = pgserver.start(durable=True)  # production settings: every commit on disk
        if pg is None:
            print("PostgreSQL is not installed", file=sys.stderr)
            return 1
        name = "stmts_" + uuid.uuid4().hex[:8]
        _create_pg_database(pg, name)
        url = pg.url(name)
    try:
        n = args.messages
        totals: dict = {}
        seen, spent = asyncio.run(measure(url, tmp, n, args.settings, totals))
    finally:
        if pg is not None:
            pg.stop()
    total = sum(seen.values())
    print(f"{args.backend}: {total / n:.2f} statements per delivered message ({n} messages); "
          f"{totals['seconds'] * 1000 / n:.2f} ms per message from MAIL FROM to the 250 (one session)"
          + (f"; {totals['wal'] / n / 1024:.1f} KiB of WAL per message" if totals.get("wal") is not None else ""))
    print(f"{sum(spent.values()) * 1000 / n:.2f} ms per message in the statements below; per message:")
    print(f"{'count':>6} {'ms':>6}  statement (ms: in the driver, as the cursor call returns; on the loop for asyncpg)")
    for sql, k in seen.most_common():
        print(f"{k / n:6.2f} {spent[sql] * 1000 / n:6.3f}  {sql}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
