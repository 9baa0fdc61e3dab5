"""`postroom user away`: an account's out-of-office auto-reply from the command line (wired into mailserver.cli).

`register(user_subparsers)` adds the action; `run(admin, args)` handles it in
the style of cli.py (errors raised as AdminError or a StoreError, printed as
one line there). Without options it shows the current setting.
"""

from __future__ import annotations

import argparse
from datetime import date, timedelta

from mailboxes.mailsettings import OOO_ZONE, OutOfOffice, day_after, day_start

from .admin import Admin, AdminError

ACTIONS = ("away",)


def register(us: argparse._SubParsersAction) -> None:
    a = us.add_parser("away", help="out-of-office auto-reply (RFC 3834); no options: show it")
    a.add_argument("address")
    a.add_argument("--off", action="store_true", help="switch it off")
    a.add_argument("--first", help="first day, YYYY-MM-DD (UTC+8)")
    a.add_argument("--last", help="last day, YYYY-MM-DD (UTC+8)")
    a.add_argument("--subject", default="", help='default: "Auto: " and the original subject')
    a.add_argument("--text", help="the reply text (switches it on)")
    a.add_argument("--days", type=int, default=7, help="days before the same sender gets another reply")


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        raise AdminError(f"not a date (YYYY-MM-DD): {text}") from None


def _shown(ooo: OutOfOffice) -> str:
    first = ooo.start.astimezone(OOO_ZONE).date().isoformat() if ooo.start else "-"
    last = (ooo.end.astimezone(OOO_ZONE) - timedelta(days=1)).date().isoformat() if ooo.end else "-"
    state = "on" if ooo.enabled else "off"
    return f"{state}\tfirst={first}\tlast={last}\tdays={ooo.days}\tsubject={ooo.subject!r}\ttext={ooo.body!r}"


async def run(admin: Admin, args: argparse.Namespace) -> int:
    acct = await admin.mb.directory.account(args.address)
    settings = admin.mb.settings
    if not args.off and args.text is None:
        print(f"{acct.address}\t{_shown(await settings.out_of_office(acct.id))}")
        return 0
    old = await settings.out_of_office(acct.id)
    first, last = _day(args.first), _day(args.last)
    ooo = OutOfOffice(not args.off, day_start(first) if first else None, day_after(last) if last else None,
                      args.subject, args.text if args.text is not None else old.body, args.days)
    await settings.set_out_of_office(acct.id, ooo)
    await admin.audited("user.away", acct.address, enabled=ooo.enabled)
    print(f"{acct.address}\t{_shown(ooo)}")
    return 0
