"""The admin console's directory pages under /admin: accounts, departments, groups and members, aliases (adminops does the work).

Every page opens the signed-in account's AdminOps: a user gets 403, something outside a
department admin's subtree 404. Forms are POSTed with the CSRF token (the middleware
refuses them without); a change redirects back (303) with ?saved=1, a refused one re-renders
the page with the error next to the field; a new or reset password is shown on the answer
to that POST only (Cache-Control: no-store), never stored or logged.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from aiohttp import web

from mailboxes.admindir import MAX_QUERY_CHARS, Page
from mailboxes.directory import DEPARTMENT_KINDS, POST_POLICIES

from ..adminops import ROLES, AdminError, AdminOps, Invalid
from .. import i18n
from ..context import LOCALE, WEBMAIL
from ..sessions import require_account
from .addressbook import _offset, _tree

PAGE = 50  # rows per console page
MIB = 1024 * 1024  # the console shows and takes quotas in MiB
NO_STORE = {"Cache-Control": "no-store"}


async def _ops(request: web.Request) -> AdminOps:
    acct = require_account(request)
    try:
        return await AdminOps.open(request.app[WEBMAIL].mailboxes, acct)
    except AdminError:
        raise web.HTTPForbidden(text="403: Forbidden", content_type="text/plain") from None


def _text(form, name: str) -> str:
    v = form.get(name, "")
    return v if isinstance(v, str) else ""


def _whole(form, name: str, field: str, scale: int = 1) -> int:
    text = _text(form, name).strip()
    if not text.isdigit() or len(text) > 15:
        raise Invalid(f"{name} must be a whole number >= 0", field, key="whole")
    return int(text) * scale


def _code(form, name: str) -> str | None:
    return _text(form, name).strip() or None


def _back(path: str, **query) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(path + ("?" + urlencode(query) if query else ""))


def _listing(request: web.Request) -> tuple[str, int]:
    return request.query.get("q", "")[:MAX_QUERY_CHARS], _offset(request.query.get("offset", ""))


async def _render(request: web.Request, ops: AdminOps, template: str, *, error: AdminError | None = None,
                  headers: dict | None = None, **values) -> web.Response:
    if isinstance(error, AdminError) and error.status == 404:
        raise web.HTTPNotFound(text="404: Not Found", content_type="text/plain")
    resp = request.app[WEBMAIL].render(request, template, status=error.status if error else 200, ops=ops,
                                       error=error, field_label=_field_label(request, error),
                                       error_text=_error_text(request, error),
                                       saved="saved" in request.query, page_size=PAGE,
                                       departments=await ops.departments(), roles=ROLES, **values)
    if headers:
        resp.headers.update(headers)
    return resp


def _field_label(request: web.Request, error: AdminError | None) -> str:
    if error is None or not error.field:
        return ""
    table = i18n.MESSAGES[request.get(LOCALE, i18n.DEFAULT)]
    return table.get(f"adm_field_{error.field}", error.field)


def _error_text(request: web.Request, error: AdminError | None) -> str:
    """Why it was refused, in the page's language (the English detail when no catalogue entry fits)."""
    if error is None:
        return ""
    table = i18n.MESSAGES[request.get(LOCALE, i18n.DEFAULT)]
    text = table.get(f"adm_msg_{error.key}") if error.key else None
    return text.format(**error.params) if text else error.detail


async def index(request: web.Request) -> web.Response:
    await _ops(request)
    raise web.HTTPSeeOther("/admin/accounts")


# --- accounts ---------------------------------------------------------------------------------------

async def accounts_page(request: web.Request, *, error: AdminError | None = None, form=None,
                        password: str | None = None, created=None) -> web.Response:
    ops = await _ops(request)
    q, offset = _listing(request)
    page = await ops.accounts(q, offset, PAGE)
    return await _render(request, ops, "admin_people_accounts.html", error=error, q=q, page=page,
                         form=form or {}, password=password, created=created,
                         headers=NO_STORE if password else None)


async def account_create(request: web.Request) -> web.Response:
    ops = await _ops(request)
    form = await request.post()
    try:
        data = {"address": _text(form, "address"), "display_name": _text(form, "display_name"),
                "department": _code(form, "department"), "role": _text(form, "role") or "user",
                "quota_bytes": _whole(form, "quota_mb", "quota_bytes", MIB),
                "quota_messages": _whole(form, "quota_messages", "quota_messages")}
        if _text(form, "password"):
            data["password"] = _text(form, "password")
        acct, password = await ops.create_account(data)
    except AdminError as e:
        return await accounts_page(request, error=e, form=form)
    return await accounts_page(request, password=password, created=acct)


async def account_page(request: web.Request, *, error: AdminError | None = None,
                       password: str | None = None) -> web.Response:
    ops = await _ops(request)
    try:
        acct = await ops.account(request.match_info["address"])
    except AdminError as e:
        return await _render(request, ops, "admin_people_account.html", error=e, acct=None)
    return await _render(request, ops, "admin_people_account.html", error=error, acct=acct, mib=MIB,
                         password=password, headers=NO_STORE if password else None)


async def account_update(request: web.Request) -> web.Response:
    ops = await _ops(request)
    address = request.match_info["address"]
    form = await request.post()
    try:
        data = {"display_name": _text(form, "display_name"), "department": _code(form, "department"),
                "role": _text(form, "role"), "quota_bytes": _whole(form, "quota_mb", "quota_bytes", MIB),
                "quota_messages": _whole(form, "quota_messages", "quota_messages")}
        acct = await ops.update_account(address, data)
    except AdminError as e:
        return await account_page(request, error=e)
    raise _back(f"/admin/accounts/{quote(acct.address)}", saved=1)


async def account_enabled(request: web.Request) -> web.Response:
    ops = await _ops(request)
    form = await request.post()
    try:
        acct = await ops.update_account(request.match_info["address"], {"enabled": _text(form, "enabled") == "1"})
    except AdminError as e:
        return await account_page(request, error=e)
    raise _back(f"/admin/accounts/{quote(acct.address)}", saved=1)


async def account_password(request: web.Request) -> web.Response:
    ops = await _ops(request)
    try:
        password = await ops.reset_password(request.match_info["address"])
    except AdminError as e:
        return await account_page(request, error=e)
    return await account_page(request, password=password)


# --- departments -------------------------------------------------------------------------------------

async def departments_page(request: web.Request, *, error: AdminError | None = None, form=None) -> web.Response:
    ops = await _ops(request)
    return await _render(request, ops, "admin_people_departments.html", error=error, form=form or {},
                         tree=_tree(await ops.departments()), kinds=DEPARTMENT_KINDS)


async def department_create(request: web.Request) -> web.Response:
    ops = await _ops(request)
    form = await request.post()
    try:
        await ops.create_department({"code": _text(form, "code"), "name": _text(form, "name"),
                                     "parent": _code(form, "parent"), "kind": _text(form, "kind") or "department"})
    except AdminError as e:
        return await departments_page(request, error=e, form=form)
    raise _back("/admin/departments", saved=1)


async def department_rename(request: web.Request) -> web.Response:
    ops = await _ops(request)
    form = await request.post()
    try:
        await ops.update_department(request.match_info["code"], {"name": _text(form, "name")})
    except AdminError as e:
        return await departments_page(request, error=e)
    raise _back("/admin/departments", saved=1)


async def department_leader(request: web.Request) -> web.Response:
    """POST /admin/departments/{code}/leader: who approves its held mail (issue 13); empty clears; admins only."""
    ops = await _ops(request)
    form = await request.post()
    try:
        await ops.update_department(request.match_info["code"], {"leader": _code(form, "leader")})
    except AdminError as e:
        return await departments_page(request, error=e)
    raise _back("/admin/departments", saved=1)


# --- groups -------------------------------------------------------------------------------------------

async def groups_page(request: web.Request, *, error: AdminError | None = None, form=None) -> web.Response:
    ops = await _ops(request)
    q, offset = _listing(request)
    return await _render(request, ops, "admin_people_groups.html", error=error, q=q, form=form or {},
                         page=await ops.groups(q, offset, PAGE), policies=POST_POLICIES)


async def group_create(request: web.Request) -> web.Response:
    ops = await _ops(request)
    form = await request.post()
    try:
        row, _ = await ops.create_group({"address": _text(form, "address"), "name": _text(form, "name"),
                                         "department": _code(form, "department"),
                                         "post_policy": _text(form, "post_policy") or "domain"})
    except AdminError as e:
        return await groups_page(request, error=e, form=form)
    raise _back(f"/admin/groups/{quote(row.address)}", saved=1)


async def group_page(request: web.Request, *, error: AdminError | None = None) -> web.Response:
    ops = await _ops(request)
    try:
        row, group = await ops.group(request.match_info["address"])
    except AdminError as e:
        return await _render(request, ops, "admin_people_group.html", error=e, row=None)
    q, offset = _listing(request)
    members = [m for m in group.members if q.lower() in m] if q else list(group.members)
    page = Page(total=len(members), offset=offset, items=members[offset:offset + PAGE])
    return await _render(request, ops, "admin_people_group.html", error=error, row=row, group=group, q=q,
                         page=page)


async def group_members(request: web.Request) -> web.Response:
    """One address added to or removed from the members or the allowed posters."""
    ops = await _ops(request)
    form = await request.post()
    action, kind = _text(form, "action"), _text(form, "kind")
    key = {"add": "add", "remove": "remove"}.get(action, "")
    key += "_posters" if kind == "posters" else ""
    try:
        if not action or action not in ("add", "remove"):
            raise Invalid("action must be add or remove", "action")
        row, _ = await ops.change_members(request.match_info["address"], {key: [_text(form, "member")]})
    except AdminError as e:
        if e.field in GROUP_FIELDS:
            e.field = "member"
        return await group_page(request, error=e)
    raise _back(f"/admin/groups/{quote(row.address)}", saved=1)


GROUP_FIELDS = ("add", "remove", "add_posters", "remove_posters")


async def group_delete(request: web.Request) -> web.Response:
    ops = await _ops(request)
    try:
        await ops.delete_group(request.match_info["address"])
    except AdminError as e:
        return await group_page(request, error=e)
    raise _back("/admin/groups", saved=1)


# --- aliases ------------------------------------------------------------------------------------------

async def aliases_page(request: web.Request, *, error: AdminError | None = None, form=None) -> web.Response:
    ops = await _ops(request)
    q, offset = _listing(request)
    return await _render(request, ops, "admin_people_aliases.html", error=error, q=q, form=form or {},
                         page=await ops.aliases(q, offset, PAGE))


async def alias_create(request: web.Request) -> web.Response:
    ops = await _ops(request)
    form = await request.post()
    try:
        await ops.create_alias({"address": _text(form, "address"), "target": _text(form, "target")})
    except AdminError as e:
        return await aliases_page(request, error=e, form=form)
    raise _back("/admin/aliases", saved=1)


async def alias_delete(request: web.Request) -> web.Response:
    ops = await _ops(request)
    form = await request.post()
    try:
        await ops.delete_alias(_text(form, "address"))
    except AdminError as e:
        return await aliases_page(request, error=e)
    raise _back("/admin/aliases", saved=1)


ROUTES = (
    ("GET", "/admin", index),
    ("GET", "/admin/accounts", accounts_page),
    ("POST", "/admin/accounts", account_create),
    ("GET", "/admin/accounts/{address}", account_page),
    ("POST", "/admin/accounts/{address}", account_update),
    ("POST", "/admin/accounts/{address}/enabled", account_enabled),
    ("POST", "/admin/accounts/{address}/password", account_password),
    ("GET", "/admin/departments", departments_page),
    ("POST", "/admin/departments", department_create),
    ("POST", "/admin/departments/{code}", department_rename),
    ("POST", "/admin/departments/{code}/leader", department_leader),  # issue 13: who approves held mail
    ("GET", "/admin/groups", groups_page),
    ("POST", "/admin/groups", group_create),
    ("GET", "/admin/groups/{address}", group_page),
    ("POST", "/admin/groups/{address}/members", group_members),
    ("POST", "/admin/groups/{address}/delete", group_delete),
    ("GET", "/admin/aliases", aliases_page),
    ("POST", "/admin/aliases", alias_create),
    ("POST", "/admin/aliases/delete", alias_delete),
)
