"""`postroom retention set/list/remove/run` and `postroom hold add/list/release` (docs/retention.md; wired into mailserver.cli).

Every change of a policy and every hold placed or released is audited by mailboxes.holdops (the console's path too);
a retention run audits its own summary (mailboxes/retention.py).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from mailboxes import holdops, retention
from mailboxes.documents import register_folders
from mailboxes.errors import NotFound

from .admin import Admin


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("retention", help="keep mail N days per folder kind, then delete or archive it")
    rs = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = rs.add_parser("set", help="set the policy of a folder kind (optionally for one department)")
    a.add_argument("kind", choices=retention.KINDS)
    a.add_argument("days", type=int)
    a.add_argument("--then", dest="then", choices=retention.ACTIONS, default="delete",
                   help="what happens after the days (archive: to the year archive)")
    a.add_argument("--department", default="")
    rs.add_parser("list", help="the policies")
    a = rs.add_parser("remove", help="remove the policy of a folder kind")
    a.add_argument("kind", choices=retention.KINDS)
    a.add_argument("--department", default="")
    a = rs.add_parser("run", help="one retention pass now (the server also runs it on a schedule)")
    a.add_argument("--dry-run", action="store_true", help="only show what it would do")
    h = sub.add_parser("hold", help="legal holds: mail no deletion path may remove")
    hs = h.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = hs.add_parser("add", help="place a hold on an account, a department or a search")
    a.add_argument("name", help="what the hold is for (a case name)")
    a.add_argument("--account", help="address of the account held (or the account a search is limited to)")
    a.add_argument("--department", help="code of the department held (or the department a search is limited to)")
    for crit in ("from", "subject", "text"):
        a.add_argument(f"--{crit}", dest=f"c_{crit}", help=f"search: {crit} contains")
    a.add_argument("--since", dest="c_since", help="search: received on or after YYYY-MM-DD")
    a.add_argument("--before", dest="c_before", help="search: received before YYYY-MM-DD")
    a.add_argument("--reason", default="", help="why (written to the audit entry)")
    a = hs.add_parser("list", help="active holds")
    a.add_argument("--all", action="store_true", help="released ones too")
    a = hs.add_parser("release", help="lift a hold")
    a.add_argument("id", type=int)
    a.add_argument("--reason", default="", help="why (written to the audit entry)")


async def run_retention(admin: Admin, args: argparse.Namespace) -> int:
    central = admin.mb.router.central
    if args.action == "set":
        p = await holdops.set_retention(admin.mb, admin.actor, args.kind, args.days, args.then,
                                        department=args.department, via="cli")
        print(f"{p.folder_kind}{' in ' + p.department_code if p.department_code else ''}: "
              f"after {p.days} days, {p.action}")
    elif args.action == "remove":
        await holdops.remove_retention(admin.mb, admin.actor, args.kind, department=args.department, via="cli")
        print(f"removed the retention policy of {args.kind}")
    elif args.action == "list":
        for p in await retention.list_policies(central):
            print(f"{p.folder_kind}\t{p.department_code or '*'}\t{p.days} days\t{p.action}")
    else:
        rep = await retention.run(admin.mb.store, dry_run=args.dry_run,
                                  records=register_folders(admin.config.get("documents", "address")))
        verb = "would" if args.dry_run else "did"
        for i in rep.items:
            print(f"{i.account}\t{i.folder}\t{i.action}\t{i.due} due\t"
                  f"{i.due - i.kept if args.dry_run else i.done} {verb} go\t{i.kept} kept by a legal hold")
        print(f"{'dry run: ' if args.dry_run else ''}{rep.accounts} accounts, {rep.deleted} deleted, "
              f"{rep.archived} archived, {rep.kept} kept by legal holds, {rep.skipped} left to other nodes")
    return 0


async def run_hold(admin: Admin, args: argparse.Namespace) -> int:
    holds = admin.mb.store.holds
    d = admin.mb.directory
    if args.action == "add":
        crit = {k[2:]: v for k, v in vars(args).items() if k.startswith("c_") and v}
        h = await holdops.place_hold(admin.mb, admin.actor, args.name, account=args.account,
                                     department=args.department, criteria=crit, reason=args.reason, via="cli")
        print(f"placed legal hold #{h.id} ({h.name}) on {_scope(h, args.account)}")
    elif args.action == "list":
        for h in await holds.list(include_released=args.all):
            acct = await _address(d, h.account_id) if h.account_id else None
            state = f"released {h.released_at:%Y-%m-%d} by {h.released_by}" if h.released_at else "active"
            print(f"#{h.id}\t{h.name}\t{_scope(h, acct)}\tplaced {h.placed_at:%Y-%m-%d} by {h.placed_by}\t{state}")
    else:
        h = await holdops.lift_hold(admin.mb, admin.actor, args.id, reason=args.reason, via="cli")
        print(f"released legal hold #{h.id} ({h.name}) at {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    return 0


async def _address(d, account_id: int) -> str:
    try:
        return (await d.account_by_id(account_id)).address
    except NotFound:
        return f"#{account_id} (removed)"


def _scope(h, account: str | None) -> str:
    parts = [f"account {account}" if account else "", f"department {h.department_code}" if h.department_code else ""]
    parts += [f"{k}={v}" for k, v in h.criteria.items()]
    return ", ".join(p for p in parts if p)


HANDLERS = {"retention": run_retention, "hold": run_hold}
