"""The `postroom` administrator's command: one subcommand per task, one readable line per error."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import secrets
import sys
from collections.abc import Awaitable, Callable

from mailboxes import errors
from mailboxes.cleanup import sweep_all
from mailboxes.leaders import DepartmentLeaders
from mailboxes.model import Role

from . import (app, cli_approvals, cli_audit, cli_delivery, cli_events, cli_mailsettings, cli_retention, cli_tokens,
               cli_webhooks)
from . import config as config_mod
from .admin import Admin, AdminError
from .workers import SupervisorError

log = logging.getLogger("postroom.admin")


def _password(args: argparse.Namespace, *, required: bool) -> str | None:
    if getattr(args, "password_stdin", False):
        pw = sys.stdin.readline().rstrip("\r\n")
        if not pw:
            raise AdminError("no password on standard input")
        return pw
    if not required:
        return None
    if not sys.stdin.isatty():
        raise AdminError("give the password with --password-stdin")
    pw = getpass.getpass("Password: ")
    if pw != getpass.getpass("Again: "):
        raise AdminError("the passwords differ")
    return pw


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="postroom", description="Postroom mail server administration")
    p.add_argument("--config", help=f"configuration file (default ${config_mod.ENV_VAR} or ./postroom.toml)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", help="create the data directory, database, TLS certificate and config")
    s.add_argument("--demo", action="store_true", help="also add a demo domain and two demo accounts")
    s.add_argument("--domain", default="postroom.test", help="demo domain (with --demo)")

    s = sub.add_parser("serve", help="run the server until SIGTERM")
    s.add_argument("--workers", type=int, metavar="N",
                   help="worker processes (default: [server] workers; 0: 1 on SQLite, one per CPU core on "
                        "PostgreSQL; 1: this process only)")

    s = sub.add_parser("config", help="configuration")
    cs = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    cs.add_parser("check", help="report every problem in the configuration")
    cs.add_parser("docs", help="print the reference of every key")

    s = sub.add_parser("domain", help="local domains")
    ds = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    ds.add_parser("add").add_argument("name")
    ds.add_parser("list")
    ds.add_parser("remove").add_argument("name")

    s = sub.add_parser("department", help="departments and district bureaus")
    ds = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ds.add_parser("add")
    a.add_argument("code")
    a.add_argument("name")
    a.add_argument("--parent")
    a.add_argument("--kind", default="department", choices=["bureau", "department", "district"])
    ds.add_parser("list")
    a = ds.add_parser("set-leader", help="the account that approves the department's held mail (issue 13)")
    a.add_argument("code")
    a.add_argument("account")
    ds.add_parser("clear-leader", help="no leader: held mail goes to the parent's leader, else the office"
                  ).add_argument("code")

    s = sub.add_parser("user", help="accounts")
    us = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = us.add_parser("add")
    a.add_argument("address")
    a.add_argument("--name", default="", help="display name")
    a.add_argument("--department")
    a.add_argument("--role", default="user", choices=[r.value for r in Role])
    a.add_argument("--quota", type=int, help="quota in bytes (0: unlimited)")
    a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    a = us.add_parser("list")
    a.add_argument("--domain")
    a.add_argument("--department")
    a = us.add_parser("passwd")
    a.add_argument("address")
    a.add_argument("--password-stdin", action="store_true")
    for name in ("disable", "enable", "remove"):
        us.add_parser(name).add_argument("address")
    us.add_parser("sweep", help="remove message bodies and search entries no message refers to (left by"
                  " older versions or a crash) and recount every account's quota usage; safe while serving")
    a = us.add_parser("app-password", help="create an app password for a mail client")
    a.add_argument("address")
    a.add_argument("label")
    cli_mailsettings.register(us)

    s = sub.add_parser("group", help="distribution lists")
    gs = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = gs.add_parser("add")
    a.add_argument("address")
    a.add_argument("--name", default="")
    a.add_argument("--policy", default="domain", choices=["anyone", "domain", "members", "posters"],
                   help="who may post: anyone, local senders (domain), members, or listed posters")
    a.add_argument("--department")
    a = gs.add_parser("members")
    a.add_argument("address")
    a.add_argument("--add", nargs="*", default=[])
    a.add_argument("--remove", nargs="*", default=[])
    a.add_argument("--posters", action="store_true", help="edit the posters instead of the members")
    gs.add_parser("list")

    s = sub.add_parser("alias", help="aliases")
    als = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = als.add_parser("add")
    a.add_argument("address")
    a.add_argument("target")
    als.add_parser("list")
    als.add_parser("remove").add_argument("address")

    s = sub.add_parser("import", help="import mail into a folder")
    s.add_argument("--user", required=True)
    s.add_argument("--folder", default="INBOX")
    s.add_argument("kind", choices=["mbox", "maildir"])
    s.add_argument("path")

    s = sub.add_parser("export", help="export a folder")
    s.add_argument("--user", required=True)
    s.add_argument("--folder", required=True)
    s.add_argument("--mbox", required=True, help="output file")

    s = sub.add_parser("archive", help="move a closed year's mail to its archive database")
    s.add_argument("--year", type=int, required=True)

    s = sub.add_parser("reindex", help="rebuild the search indexes of stored mail (after upgrading to substring search)")
    s.add_argument("--partition", action="append", default=None,
                   help='partition name (repeatable; default "main"), e.g. dept-tax or archive-2025')
    cli_delivery.register(sub)  # route, dkim, queue
    cli_tokens.register(sub)  # API tokens (issue 10)
    app.bridge_commands().register(sub)  # partner, dispatch (issue 12)
    cli_webhooks.register(sub)  # webhooks out (issue 11)
    cli_audit.register(sub)  # the tamper-evident audit log (issue 13)
    cli_events.register(sub)  # workflow sources and events (issue 11)
    cli_retention.register(sub)  # retention and legal hold (issue 13)
    cli_approvals.register(sub)  # held mail decided by an administrator (issue 13)
    return p


Handler = Callable[[Admin, argparse.Namespace], Awaitable[int]]


async def _init(admin: Admin, args: argparse.Namespace) -> int:
    created = await admin.init(demo=args.demo, domain=args.domain)
    for line in created:
        print(line)
    return 0


async def _serve(admin: Admin, args: argparse.Namespace) -> int:
    from . import workers
    from .app import serve  # the composition root
    spec = workers.WorkerSpec.from_env()
    if spec is not None:  # started by a supervisor
        return await serve(admin.config, worker=spec)
    count = workers.worker_count(args.workers, admin.config)
    if count == 1:
        return await serve(admin.config)
    return await workers.supervise(admin.config, count)


async def _config(admin: Admin, args: argparse.Namespace) -> int:
    if args.action == "docs":
        print(config_mod.render_docs())
        return 0
    problems = await admin.check()
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print("configuration OK")
    return 0


async def _domain(admin: Admin, args: argparse.Namespace) -> int:
    d = admin.mb.directory
    if args.action == "add":
        dom = await d.add_domain(args.name)
        await admin.audited("domain.add", dom.name)
        print(f"added domain {dom.name}")
    elif args.action == "list":
        for dom in await d.list_domains():
            print(dom.name)
    else:
        await d.remove_domain(args.name)
        await admin.audited("domain.remove", args.name)
        print(f"removed domain {args.name}")
    return 0


async def _department(admin: Admin, args: argparse.Namespace) -> int:
    d = admin.mb.directory
    if args.action == "add":
        dep = await d.add_department(args.code, args.name, parent=args.parent, kind=args.kind)
        await admin.audited("department.add", dep.code, name=dep.name)
        print(f"added department {dep.code}")
    elif args.action in ("set-leader", "clear-leader"):
        dep = await DepartmentLeaders(admin.mb.router.central).set(args.code, getattr(args, "account", None))
        await admin.audited("department.leader", dep.code, leader=dep.leader)
        print(f"department {dep.code} leader: {dep.leader or '- (the parent, else the office)'}")
    else:
        deps = await d.list_departments()
        by_id = {x.id: x for x in deps}
        for x in deps:
            parent = by_id[x.parent_id].code if x.parent_id in by_id else "-"
            print(f"{x.code}\t{x.kind}\t{parent}\t{x.leader or '-'}\t{x.name}")
    return 0


async def _user(admin: Admin, args: argparse.Namespace) -> int:
    d = admin.mb.directory
    act = args.action
    if act in cli_mailsettings.ACTIONS:
        return await cli_mailsettings.run(admin, args)
    if act == "add":
        pw = _password(args, required=False)
        generated = pw is None
        if generated:
            pw = secrets.token_urlsafe(12)
        quota = args.quota if args.quota is not None else admin.config.get("limits", "default_quota_bytes")
        acct = await admin.mb.add_account(args.address, password=pw, display_name=args.name,
                                          department=args.department, role=Role(args.role), quota_bytes=quota,
                                          quota_messages=admin.config.get("limits", "default_quota_messages"))
        await admin.audited("user.add", acct.address, role=acct.role.value, department=acct.department_code)
        print(f"added {acct.address}")
        if generated:
            print(f"password: {pw}")
    elif act == "list":
        for a in await d.list_accounts(domain=args.domain, department=args.department):
            state = "enabled" if a.enabled else "disabled"
            print(f"{a.address}\t{a.role.value}\t{a.department_code or '-'}\t{state}\t{a.display_name}")
    elif act == "passwd":
        await d.set_password(args.address, _password(args, required=True))
        await admin.audited("user.passwd", args.address)
        print(f"password changed for {args.address}")
    elif act in ("disable", "enable"):
        await d.set_enabled(args.address, act == "enable")
        await admin.audited(f"user.{act}", args.address)
        print(f"{act}d {args.address}")
    elif act == "remove":
        acct = await d.account(args.address)
        n = await admin.mb.store.purge_account(acct)  # its mail, bodies and index entries go first
        acct = await d.remove_account(args.address)
        await admin.audited("user.remove", acct.address, messages=n)
        print(f"removed {acct.address} and its {n} messages")
    elif act == "sweep":
        for part, r in (await sweep_all(admin.mb.store)).items():
            print(f"{part}: {r.blobs} bodies, {r.search_rows} search rows, {r.files} files removed;"
                  f" usage corrected for {r.usage_fixed} accounts")
        await admin.audited("user.sweep")
    elif act == "app-password":
        secret = await d.add_app_password(args.address, args.label)
        await admin.audited("user.app_password", args.address, label=args.label)
        print(f"app password for {args.address} ({args.label}): {secret}")
    return 0


async def _group(admin: Admin, args: argparse.Namespace) -> int:
    d = admin.mb.directory
    if args.action == "add":
        g = await d.add_group(args.address, args.name, post_policy=args.policy, department=args.department)
        await admin.audited("group.add", g.address, policy=g.post_policy)
        print(f"added group {g.address}")
    elif args.action == "members":
        g = await d.set_group_members(args.address, add=args.add, remove=args.remove, posters=args.posters)
        if args.add or args.remove:
            await admin.audited("group.members", g.address, add=args.add, remove=args.remove, posters=args.posters)
        for m in (g.posters if args.posters else g.members):
            print(m)
    else:
        for g in await d.list_groups():
            print(f"{g.address}\t{g.post_policy}\t{len(g.members)} members\t{g.name}")
    return 0


async def _alias(admin: Admin, args: argparse.Namespace) -> int:
    d = admin.mb.directory
    if args.action == "add":
        await d.add_alias(args.address, args.target)
        await admin.audited("alias.add", args.address, alias_target=args.target)
        print(f"added alias {args.address} -> {args.target}")
    elif args.action == "list":
        for a, tgt in await d.list_aliases():
            print(f"{a}\t{tgt}")
    else:
        await d.remove_alias(args.address)
        await admin.audited("alias.remove", args.address)
        print(f"removed alias {args.address}")
    return 0


async def _import(admin: Admin, args: argparse.Namespace) -> int:
    n, skipped = await admin.import_mail(args.user, args.folder, args.kind, args.path)
    extra = f" ({skipped} already present, skipped)" if skipped else ""
    print(f"imported {n} messages into {args.user} {args.folder}{extra}")
    return 0


async def _export(admin: Admin, args: argparse.Namespace) -> int:
    n = await admin.export_mbox(args.user, args.folder, args.mbox)
    print(f"exported {n} messages to {args.mbox}")
    return 0


async def _archive(admin: Admin, args: argparse.Namespace) -> int:
    rep = await admin.archive(args.year)
    print(f"archived {rep.moved} messages of {args.year} from {rep.folders} folders")
    return 0


async def _reindex(admin: Admin, args: argparse.Namespace) -> int:
    n = await admin.reindex(args.partition or ["main"])
    print(f"reindexed {n} messages")
    return 0


HANDLERS: dict[str, Handler] = {
    "init": _init, "serve": _serve, "config": _config, "domain": _domain, "department": _department,
    "user": _user, "group": _group, "alias": _alias, "import": _import, "export": _export, "archive": _archive,
    "reindex": _reindex, "token": cli_tokens.run, "webhook": cli_webhooks.run, "audit": cli_audit.run,
    "approvals": cli_approvals.run,
    **cli_delivery.HANDLERS, **cli_events.HANDLERS, **app.bridge_commands().HANDLERS, **cli_retention.HANDLERS,
}
# Commands that must not open the store first (it may not exist yet, or they check the config only).
NO_STORE = {"init", "serve", "config"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("POSTROOM_LOG", "WARNING").upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        for p in exc.problems:
            print(f"postroom: config: {p}", file=sys.stderr)
        return 2
    handler = HANDLERS[args.command]
    try:
        return asyncio.run(_run(cfg, args, handler))
    except (errors.StoreError, AdminError, SupervisorError, ValueError, OSError) as exc:
        print(f"postroom: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("postroom: interrupted", file=sys.stderr)
        return 130


async def _run(cfg: config_mod.Config, args: argparse.Namespace, handler: Handler) -> int:
    admin = Admin(cfg, actor=f"cli:{getpass.getuser()}")
    if args.command not in NO_STORE:
        await admin.open(must_exist=True)
    try:
        return await handler(admin, args)
    finally:
        await admin.close()


if __name__ == "__main__":
    sys.exit(main())
