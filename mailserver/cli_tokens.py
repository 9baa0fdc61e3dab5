"""`postroom token add/list/revoke`: bearer tokens for the JSON API under /api/v1/ (wired into mailserver.cli).

`register(subparsers)` adds the command; `run(admin, args)` handles it in the
style of cli.py. The secret is printed once, at `add`; only its SHA-256 is kept.
"""

from __future__ import annotations

import argparse

from mailboxes.apitokens import ApiTokens
from mailboxes.errors import NotFound

from .admin import Admin


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("token", help="bearer tokens for the JSON API (/api/v1/)")
    ts = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ts.add_parser("add", help="create a token acting as an account; prints the secret once "
                                  "(a workflow system's: `postroom source add`)")
    a.add_argument("address", help="the owner account")
    a.add_argument("--department", help="limit the token to this department (default: whole server)")
    a.add_argument("--label", default="", help="what the token is for")
    a = ts.add_parser("list")
    a.add_argument("--owner", help="only this account's tokens")
    ts.add_parser("revoke").add_argument("id", type=int)


async def run(admin: Admin, args: argparse.Namespace) -> int:
    d = admin.mb.directory
    tokens = ApiTokens(admin.mb.router.central)
    if args.action == "add":
        owner = await d.account(args.address)
        dept_id = None
        if args.department:
            by_code = {dep.code: dep for dep in await d.list_departments()}
            dep = by_code.get(args.department.lower())
            if dep is None:
                raise NotFound(f"no department {args.department}")
            dept_id = dep.id
        secret, tok = await tokens.create(owner.id, department_id=dept_id, label=args.label)
        await admin.audited("token.add", owner.address, token_id=tok.id, kind=tok.kind,
                            department=args.department or "")
        print(f"token {tok.id} for {owner.address}: {secret}")
        print("(shown once: only its SHA-256 is stored)")
    elif args.action == "list":
        accounts = {a.id: a.address for a in await d.list_accounts()}
        owner_id = (await d.account(args.owner)).id if args.owner else None
        depts = {dep.id: dep.code for dep in await d.list_departments()}
        for tok in await tokens.list(owner_id=owner_id):
            state = f"revoked {tok.revoked_at:%Y-%m-%d %H:%M}" if tok.revoked_at else "active"
            used = f"{tok.last_used_at:%Y-%m-%d %H:%M}" if tok.last_used_at else "never"
            scope = depts.get(tok.department_id, "?") if tok.department_id is not None else "server"
            owner = accounts.get(tok.owner_id, tok.owner_id) if tok.owner_id is not None else f"source {tok.label}"
            print(f"{tok.id}\t{tok.kind}\t{owner}\t{scope}\t"
                  f"created {tok.created_at:%Y-%m-%d %H:%M}\tlast used {used}\t{state}\t{tok.label}")
    else:
        tok = await tokens.revoke(args.id)
        await admin.audited("token.revoke", str(tok.id))
        print(f"revoked token {tok.id}")
    return 0
