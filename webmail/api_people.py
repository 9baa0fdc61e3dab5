"""The JSON API's directory routes: accounts, departments, groups and their members, aliases (webmail/adminops.py does the work).

Every handler opens the actor's AdminOps (403 for a plain user), reads a JSON object body
where it takes one, and turns an AdminError into RFC 9457 problem details carrying `field`
(the input at fault) when there is one.
"""

from __future__ import annotations

import functools
import json

from aiohttp import web

from mailboxes.admindir import MAX_OFFSET

from .adminops import (AdminError, AdminOps, Invalid, account_json, alias_json, department_json, group_json)
from .api import ACTOR, MAILBOXES, TOKEN, problem

DEFAULT_PAGE = 50
NO_STORE = {"Cache-Control": "no-store"}  # answers that carry a password


def _ops_handler(fn):
    """Open the actor's AdminOps for `fn(request, ops)`; AdminErrors become problem details."""
    @functools.wraps(fn)
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            ops = await AdminOps.open(request.app[MAILBOXES], request[ACTOR], within=request[TOKEN].department_id)
            return await fn(request, ops)
        except AdminError as e:
            return problem(e.status, e.title, e.detail, **({"field": e.field} if e.field else {}))
    return handler


async def _body(request: web.Request) -> object:
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise Invalid("the request body must be JSON") from None


def _paging(request: web.Request) -> tuple[str, int, int]:
    q = request.query
    try:
        offset = int(q.get("offset", "0"))
    except ValueError:
        raise Invalid("offset must be an integer", "offset") from None
    try:
        limit = int(q.get("limit", str(DEFAULT_PAGE)))
    except ValueError:
        raise Invalid("limit must be an integer", "limit") from None
    if not 0 <= offset <= MAX_OFFSET:
        raise Invalid(f"offset must be between 0 and {MAX_OFFSET}", "offset")
    return q.get("q", ""), offset, limit


def _page(page, to_json) -> web.Response:
    return web.json_response({"total": page.total, "offset": page.offset, "items": [to_json(x) for x in page.items]})


# --- accounts ---------------------------------------------------------------------------------------

@_ops_handler
async def list_accounts(request: web.Request, ops: AdminOps) -> web.Response:
    """GET /accounts?q=&offset=&limit=: a page of accounts by address; q matches address or name."""
    return _page(await ops.accounts(*_paging(request)), account_json)


@_ops_handler
async def create_account(request: web.Request, ops: AdminOps) -> web.Response:
    acct, password = await ops.create_account(await _body(request))
    return web.json_response({"account": account_json(acct), "password": password}, status=201, headers=NO_STORE)


@_ops_handler
async def get_account(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response(account_json(await ops.account(request.match_info["address"])))


@_ops_handler
async def update_account(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response(account_json(await ops.update_account(request.match_info["address"],
                                                                   await _body(request))))


@_ops_handler
async def reset_password(request: web.Request, ops: AdminOps) -> web.Response:
    password = await ops.reset_password(request.match_info["address"])
    return web.json_response({"password": password}, headers=NO_STORE)


# --- departments -----------------------------------------------------------------------------------

@_ops_handler
async def list_departments(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response({"items": [department_json(d) for d in await ops.departments()]})


@_ops_handler
async def create_department(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response(department_json(await ops.create_department(await _body(request))), status=201)


@_ops_handler
async def get_department(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response(department_json(await ops.department(request.match_info["code"])))


@_ops_handler
async def update_department(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response(department_json(await ops.update_department(request.match_info["code"],
                                                                         await _body(request))))


# --- groups ----------------------------------------------------------------------------------------

@_ops_handler
async def list_groups(request: web.Request, ops: AdminOps) -> web.Response:
    return _page(await ops.groups(*_paging(request)), group_json)


@_ops_handler
async def create_group(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response(group_json(*await ops.create_group(await _body(request))), status=201)


@_ops_handler
async def get_group(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response(group_json(*await ops.group(request.match_info["address"])))


@_ops_handler
async def change_members(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response(group_json(*await ops.change_members(request.match_info["address"],
                                                                  await _body(request))))


@_ops_handler
async def delete_group(request: web.Request, ops: AdminOps) -> web.Response:
    await ops.delete_group(request.match_info["address"])
    return web.Response(status=204)


# --- aliases ---------------------------------------------------------------------------------------

@_ops_handler
async def list_aliases(request: web.Request, ops: AdminOps) -> web.Response:
    return _page(await ops.aliases(*_paging(request)), alias_json)


@_ops_handler
async def create_alias(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response(alias_json(await ops.create_alias(await _body(request))), status=201)


@_ops_handler
async def get_alias(request: web.Request, ops: AdminOps) -> web.Response:
    return web.json_response(alias_json(await ops.alias(request.match_info["address"])))


@_ops_handler
async def delete_alias(request: web.Request, ops: AdminOps) -> web.Response:
    await ops.delete_alias(request.match_info["address"])
    return web.Response(status=204)


ROUTES = (
    ("GET", "/accounts", list_accounts),
    ("POST", "/accounts", create_account),
    ("GET", "/accounts/{address}", get_account),
    ("PATCH", "/accounts/{address}", update_account),
    ("POST", "/accounts/{address}/password", reset_password),
    ("GET", "/departments", list_departments),
    ("POST", "/departments", create_department),
    ("GET", "/departments/{code}", get_department),
    ("PATCH", "/departments/{code}", update_department),
    ("GET", "/groups", list_groups),
    ("POST", "/groups", create_group),
    ("GET", "/groups/{address}", get_group),
    ("DELETE", "/groups/{address}", delete_group),
    ("POST", "/groups/{address}/members", change_members),
    ("GET", "/aliases", list_aliases),
    ("POST", "/aliases", create_alias),
    ("GET", "/aliases/{address}", get_alias),
    ("DELETE", "/aliases/{address}", delete_alias),
)
