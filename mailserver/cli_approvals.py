"""`postroom approvals list/show/approve/reject`: held mail decided by an administrator (issue 13, wired into cli.py).

The same code path as the webmail's /approvals pages (delivery.approval.Approvals):
approve releases through the queue, reject returns the message to its sender with
the 5.7.1 notice; both are audited with this command's actor and logged.
"""

from __future__ import annotations

import argparse
import logging
import sys

from delivery.approval import Administrator, Approvals
from delivery.service import build
from mailboxes.errors import InvalidInput

from .admin import Admin, AdminError

log = logging.getLogger("postroom.admin")

MAX_REASON = 1000  # characters of a rejection reason (the webmail keeps as many)
MAX_SHOWN = 256 * 1024  # bytes of a held message `show` prints


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("approvals", help="mail held for approval by its classification label")
    ap = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    ap.add_parser("list", help="held messages waiting for a decision, oldest first")
    ap.add_parser("show", help="one held message: who is asked, its recipients, the message"
                  ).add_argument("id", type=int)
    ap.add_parser("approve", help="release it to its held recipients").add_argument("id", type=int)
    a = ap.add_parser("reject", help="return it to its sender with the reason")
    a.add_argument("id", type=int)
    a.add_argument("--reason", required=True)


async def run(admin: Admin, args: argparse.Namespace) -> int:
    approvals = Approvals(build(admin.mb, admin.config).submitter)
    me = Administrator(admin.actor)
    if args.action == "list":
        for h in await approvals.held.pending():
            print(f"{h.id}\t{h.created_at:%Y-%m-%d %H:%M}\t{h.label}\t{h.sender}\t{h.approver or 'office'}\t"
                  f"{','.join(h.recipients)}\t{h.subject}")
        return 0
    if args.action == "show":
        held, data = await approvals.view(args.id, me)
        print(f"id: {held.id}\nstate: {held.state}\nlabel: {held.label}\nsender: {held.sender}\n"
              f"approver: {held.approver or 'office'}\nrecipients: {', '.join(held.recipients)}\n")
        sys.stdout.write(data[:MAX_SHOWN].decode("utf-8", "replace"))
        return 0
    try:
        if args.action == "approve":
            held = await approvals.approve(args.id, me)
        else:
            reason = " ".join(args.reason.split())[:MAX_REASON]
            if not reason:
                raise AdminError("give the reason with --reason")
            held = await approvals.reject(args.id, me, reason)
    except InvalidInput as e:
        raise AdminError(str(e)) from None
    log.info("admin action=approvals.%s target=%d actor=%s", args.action, held.id, admin.actor)
    done = "released" if args.action == "approve" else "returned to its sender"
    print(f"held message {held.id} {done} ({', '.join(held.recipients)})")
    return 0
