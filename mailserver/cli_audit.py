"""`postroom audit verify/anchor/search/export`: the tamper-evident audit log (issue 13 point 3, wired into cli.py)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from mailboxes import auditlog

from .admin import Admin

SEARCH_DEFAULT_LIMIT = 100


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("audit", help="the hash-chained audit log")
    au = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    au.add_parser("verify", help="check the chain and the anchors; names the first bad entry (exit 1)")
    au.add_parser("anchor", help="append the current head (sequence, hash, time) to the anchor file")
    for name in ("search", "export"):
        a = au.add_parser(name, help="entries, newest first" if name == "search" else "entries as CSV, oldest first")
        a.add_argument("--actor")
        a.add_argument("--action", dest="kind", metavar="ACTION")
        a.add_argument("--target")
        a.add_argument("--text", help="case-insensitive substring of the actor, target or detail")
        a.add_argument("--since", type=_when, help="ISO date or time (UTC)")
        a.add_argument("--until", type=_when, help="ISO date or time (UTC)")
        a.add_argument("--limit", type=int, default=SEARCH_DEFAULT_LIMIT if name == "search" else 0)
        if name == "export":
            a.add_argument("--csv", action="store_true", help="CSV (the only format)")


def _when(v: str) -> datetime:
    d = datetime.fromisoformat(v)
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


async def run(admin: Admin, args: argparse.Namespace) -> int:
    db = admin.mb.router.central
    path = admin.config.audit_anchor_path
    if args.action == "verify":
        async with db.read() as conn:
            count, problem = await auditlog.verify(conn, auditlog.read_anchors(path))
        if problem:
            print(f"audit log BROKEN: {problem}", file=sys.stderr)
            return 1
        print(f"audit log intact: {count} entries, {len(auditlog.read_anchors(path))} anchors")
        return 0
    if args.action == "anchor":
        async with db.read() as conn:
            seq, digest = await auditlog.head(conn)
        auditlog.write_anchor(path, seq, digest, datetime.now(timezone.utc))
        print(f"anchored entry {seq} {digest} in {path}")
        return 0
    q = auditlog.query(actor=args.actor, action=args.kind, target=args.target, since=args.since, until=args.until,
                       text=args.text, newest_first=args.action == "search", limit=args.limit)
    async with db.read() as conn:
        rows = (await conn.execute(q)).all()
    if args.action == "search":
        for r in rows:
            print(f"{r.seq}\t{r.at:%Y-%m-%d %H:%M:%S}\t{r.actor}\t{r.action}\t{r.target}\t{r.detail}")
        return 0
    sys.stdout.write(auditlog.csv_text(rows, header=True))
    return 0
