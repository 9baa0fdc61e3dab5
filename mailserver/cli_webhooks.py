"""`postroom webhook set/list/remove`: where each source system's signed callbacks go (wired into mailserver.cli).

`register(subparsers)` adds the command; `run(admin, args)` handles it in the style of
cli.py. A generated secret is printed once, at `set`; a given one is read from standard
input (never from the command line, where `ps` and shell history would keep it) and not
echoed. `list` never shows secrets.
"""

from __future__ import annotations

import argparse
import sys

from mailboxes import sourceops

from .admin import Admin


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("webhook", help="signed callbacks to workflow systems (docs/webhooks.md)")
    ws = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ws.add_parser("set", help="set a source's callback URL; a new source gets a secret, printed once")
    a.add_argument("source", help="the source system's name")
    a.add_argument("url", help="https://... (http only to loopback unless [webhooks] allow_plain_http)")
    g = a.add_mutually_exclusive_group()
    g.add_argument("--secret-stdin", action="store_true", help="read the secret (whsec_...) from standard input")
    g.add_argument("--new-secret", action="store_true", help="replace the secret with a new one, printed once")
    ws.add_parser("list", help="sources, URLs and callbacks waiting, delivered and dead (no secrets)")
    ws.add_parser("remove", help="forget a source's URL and secret").add_argument("source")


async def run(admin: Admin, args: argparse.Namespace) -> int:
    if args.action == "set":
        given = sys.stdin.readline().strip() if args.secret_stdin else None
        ep, generated = await sourceops.set_webhook(
            admin.mb, admin.actor, args.source, args.url, secret=given, new_secret=args.new_secret,
            allow_plain_http=admin.config.get("webhooks", "allow_plain_http"), via="cli")
        print(f"webhook for {ep.source}: {ep.url}")
        if generated:
            print(f"secret: {ep.secret}")
            print("(shown once: give it to the receiving system, which verifies every callback with it)")
    elif args.action == "list":
        for v in (await sourceops.overview(admin.mb))[1]:
            print(f"{v.endpoint.source}\t{v.endpoint.url}\twaiting {v.waiting}\tdelivered {v.delivered}\t"
                  f"dead {v.dead}\tchanged {v.endpoint.updated_at:%Y-%m-%d %H:%M}")
    else:
        await sourceops.remove_webhook(admin.mb, admin.actor, args.source, via="cli")
        print(f"removed the webhook of {args.source}")
    return 0
