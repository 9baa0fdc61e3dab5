"""The `postroom route`, `postroom dkim` and `postroom queue` subcommands (wired into mailserver.cli).

`register(subparsers)` adds the parsers; `HANDLERS` maps each command name
to an async handler(admin, args) -> exit status, in the style of cli.py.
Errors are raised as AdminError or a StoreError and printed as one line there.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

from delivery import dkim
from delivery.keys import DkimKeys
from delivery.queue import Queue, node_id
from delivery.queueview import FILTER_STATES, MAX_PAGE, QueueView
from delivery.pullroute import new_secret
from delivery.routes import PULL, PULL_PREFIX, TLS_MODES, Routes
from mailboxes.errors import NotFound

from .admin import Admin, AdminError

Handler = Callable[[Admin, argparse.Namespace], Awaitable[int]]


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("route", help="where mail for other domains goes (district links, smarthosts)")
    rs = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = rs.add_parser("add", help='route DOMAIN ("*" for the default route) to HOST:PORT, or hold its mail in a '
                                  'local account the district fetches: pull:ACCOUNT (docs/pull.md)')
    a.add_argument("domain")
    a.add_argument("hostport", metavar="HOST:PORT|pull:ACCOUNT")
    a.add_argument("--tls", default="opportunistic", choices=TLS_MODES)
    a.add_argument("--auth", metavar="USER", help="log in to the next hop as USER (password from stdin or a prompt)")
    rs.add_parser("list")
    rs.add_parser("remove").add_argument("domain")

    s = sub.add_parser("dkim", help="DKIM signing keys and partners' trusted keys")
    ks = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ks.add_parser("generate", help="make the signing key of DOMAIN and print its DNS TXT record")
    a.add_argument("domain")
    a.add_argument("--selector", help="default: [dkim] selector")
    a.add_argument("--bits", type=int, default=2048)
    a = ks.add_parser("trust", help="trust a partner's public key without DNS")
    a.add_argument("domain")
    a.add_argument("selector")
    a.add_argument("keyfile", help="TXT record value (v=DKIM1; k=rsa; p=...) or a PEM public key")

    s = sub.add_parser("queue", help="the outbound queue")
    qs = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = qs.add_parser("list", help="queued messages, oldest first (read a page at a time)")
    a.add_argument("--state", choices=FILTER_STATES, help="only messages with a recipient in this state")
    a.add_argument("--route", help='only messages with a recipient on this route (a routed domain, or "*")')
    qs.add_parser("routes", help="waiting messages per route and the age of the oldest")
    qs.add_parser("show").add_argument("id")
    qs.add_parser("retry", help="try now (one message, or all)").add_argument("id", nargs="?")
    for name in ("hold", "release", "delete"):
        qs.add_parser(name).add_argument("id")


def _read_secret(user: str) -> str:
    if sys.stdin.isatty():
        secret = getpass.getpass(f"Password for {user} at the next hop: ")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise AdminError("no password given for --auth")
    return secret


async def _route(admin: Admin, args: argparse.Namespace) -> int:
    routes = Routes(admin.mb.router.central)
    if args.action == "add" and args.hostport.startswith(PULL_PREFIX):
        return await _pull_route(admin, routes, args.domain, args.hostport[len(PULL_PREFIX):].strip())
    if args.action == "add":
        secret = _read_secret(args.auth) if args.auth else None
        r = await routes.add(args.domain, args.hostport, tls=args.tls, auth_user=args.auth, auth_secret=secret)
        await admin.audited("route.add", r.domain, host=r.host, port=r.port, tls=r.tls, auth_user=r.auth_user)
        print(f"route {r.domain} -> {r.host}:{r.port} tls={r.tls}" + (f" auth={r.auth_user}" if r.auth_user else ""))
    elif args.action == "list":
        for r in await routes.list():
            where = f"pull:{r.auth_user}" if r.kind == PULL else f"{r.host}:{r.port}"
            print(f"{r.domain}\t{where}\ttls={r.tls}\t{r.auth_user or '-'}")
    else:
        await routes.remove(args.domain)
        await admin.audited("route.remove", args.domain)
        print(f"removed route {args.domain}")
    return 0


async def _pull_route(admin: Admin, routes: Routes, domain: str, account: str) -> int:
    """A pull route: the account is made (or, already this route's, given a new password) and its password printed once."""
    account = account.lower()
    ours = {r.auth_user for r in await routes.list() if r.kind == PULL}
    try:
        await admin.mb.directory.account(account)
        exists = True
    except NotFound:
        exists = False
    if exists and account not in ours:
        raise AdminError(f"{account} is an existing account, not a pull account: name a new one")
    secret = new_secret()
    if exists:
        await admin.mb.directory.set_password(account, secret)
    else:
        await admin.mb.add_account(account, password=secret, display_name=f"pull mailbox for {domain}")
    r = await routes.add_pull(domain, account, secret)
    await admin.audited("route.add", r.domain, kind=PULL, account=account)
    print(f"route {r.domain} -> pull:{account} (held here; the district fetches it over IMAP)")
    print(f"password for {account} (give it to the district, [pull] password_file): {secret}")
    return 0


async def _dkim(admin: Admin, args: argparse.Namespace) -> int:
    keys = DkimKeys(admin.mb.router.central)
    if args.action == "generate":
        selector = args.selector or admin.config.get("dkim", "selector")
        name, txt = await keys.generate(args.domain, selector, args.bits)
        await admin.audited("dkim.generate", args.domain, selector=selector, bits=args.bits)
        print(f"Publish this TXT record (outgoing mail for {args.domain} is now signed with selector {selector}):")
        print(dkim.zone_file_record(name.split("._domainkey.", 1)[1], selector, txt))
    else:
        try:
            text = Path(args.keyfile).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AdminError(f"cannot read {args.keyfile}: {exc}") from None
        await keys.trust(args.domain, args.selector, text)
        await admin.audited("dkim.trust", args.domain, selector=args.selector)
        print(f"trusting the DKIM key {args.selector}._domainkey.{args.domain}")
    return 0


def _when(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S") if d else "-"


async def _queue(admin: Admin, args: argparse.Namespace) -> int:
    queue = Queue(admin.mb.router.central, node=node_id(admin.config.hostname))
    act = args.action
    if act == "list":
        view, after, total = QueueView(admin.mb.router.central), 0, 0
        while after is not None:  # a page at a time: the queue may hold 100,000 messages
            page = await view.page(state=args.state, route=args.route, after=after, limit=MAX_PAGE)
            for e in page.items:
                states = ",".join(sorted(e.states))
                print(f"{e.queue_id}\t{_when(e.created_at)}\t{e.size}\t<{e.mail_from}>\t{e.recipients} rcpt\t{states}")
            after, total = page.next_cursor, page.total
        print(f"{total} messages queued" + (" (filtered)" if args.state or args.route else ""), file=sys.stderr)
    elif act == "routes":
        now = datetime.now(timezone.utc)
        for r in await QueueView(admin.mb.router.central).route_figures():
            age = f"{int((now - r.oldest).total_seconds())}s" if r.oldest else "-"
            link = r.state if r.state == "up" else (
                f"down since {_when(r.down_since)}, next probe {_when(r.next_probe_at)}: {r.last_error or '-'}")
            print(f"{r.route}\t{r.via}\t{r.messages} messages\t{r.recipients} rcpt\t{r.urgent} urgent"
                  f"\toldest {age}\t{link}")
    elif act == "show":
        e = await queue.entry(args.id)
        print(f"queue id:  {e.queue_id}\narrived:   {_when(e.created_at)}\nfrom:      <{e.mail_from}>\n"
              f"size:      {e.size}\norigin:    {e.origin}\nsubmitter: {e.submitter or '-'}")
        for r in e.recipients:
            print(f"  <{r.rcpt}>\t{r.state}\tattempts={r.attempts}\tnext={_when(r.next_attempt_at)}"
                  f"\t{r.last_error or ''}")
        head = (await queue.data_of(e.queue_id)).split(b"\r\n\r\n", 1)[0]
        print(head.decode("utf-8", "replace"))
    elif act == "retry":
        n = await queue.retry(args.id)
        await admin.audited("queue.retry", args.id or "*", recipients=n)
        print(f"{n} recipients due now (a running server picks them up within 30 seconds)")
    elif act in ("hold", "release"):
        n = await (queue.hold(args.id) if act == "hold" else queue.release(args.id))
        await admin.audited(f"queue.{act}", args.id, recipients=n)
        print(f"{act} {args.id}: {n} recipients")
    else:
        await queue.delete(args.id)
        await admin.audited("queue.delete", args.id)
        print(f"deleted {args.id} (no bounce is sent)")
    return 0


HANDLERS: dict[str, Handler] = {"route": _route, "dkim": _dkim, "queue": _queue}
