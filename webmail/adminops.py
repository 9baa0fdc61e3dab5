"""The directory's admin operations shared by the console and the JSON API: who may do what, validation, audit, log.

Implementation notes
- Roles: `admin` may do everything; `department_admin` sees and changes only accounts, groups
  and aliases of its own department and the departments below it, may not make anyone an
  admin, may not move an account out of its subtree and may not touch an admin's account;
  `user` (and a disabled account) may do nothing here (403).
- Something outside a department admin's subtree is "not found" (404), so ids from another
  department tell nothing; a forbidden change to something it may see is 403.
- Input is a dict of typed values (JSON from the API; the console converts its form fields);
  unknown fields and bad values raise Invalid naming the field.
- Each change writes one audit entry (Directory.audit) and one line to the `postroom.admin`
  log. Passwords are never in either: a generated password is returned once to the caller.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from mailboxes.admindir import DirectoryAdmin, GroupRow, Page
from mailboxes.addresses import normalise_address
from mailboxes.directory import DEPARTMENT_KINDS, POST_POLICIES
from mailboxes.errors import AlreadyExists, InvalidInput, NotFound
from mailboxes.leaders import DepartmentLeaders
from mailboxes.model import Account, Department, Group, Role
from mailboxes.service import Mailboxes
from mailboxes.websessions import WebSessions

log = logging.getLogger("postroom.admin")

MAX_NAME = 255  # display, department and group names (the columns' width)
MAX_PASSWORD = 1024  # characters of a password given by an admin
MIN_PASSWORD = 8
MAX_MEMBER_CHANGES = 500  # addresses added or removed by one request
GENERATED_PASSWORD_BYTES = 12  # a reset password: 16 URL-safe characters


class AdminError(Exception):
    """A refused admin operation: HTTP status, a readable detail and the input field at fault."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, field: str | None = None, *, key: str | None = None, **params) -> None:
        super().__init__(detail)
        self.detail = detail  # English, for the API and the logs
        self.field = field
        self.key = key        # the console's catalogue entry adm_msg_<key>, formatted with params
        self.params = params


class Invalid(AdminError):
    pass


class Forbidden(AdminError):
    status, title = 403, "Forbidden"


class Missing(AdminError):
    status, title = 404, "Not Found"


class Conflict(AdminError):
    status, title = 409, "Conflict"


# --- field validation -----------------------------------------------------------------------

def _text(limit: int) -> Callable[[str, Any], str]:
    def check(name: str, v: Any) -> str:
        if not isinstance(v, str) or len(v) > limit:
            raise Invalid(f"{name} must be text of at most {limit} characters", name, key="text", limit=limit)
        return v.strip()
    return check


def _count(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 2 ** 62:
        raise Invalid(f"{name} must be a whole number >= 0", name, key="whole")
    return v


def _flag(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise Invalid(f"{name} must be true or false", name, key="bool")
    return v


def _address(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise Invalid(f"{name} must be an e-mail address", name, key="email")
    try:
        return normalise_address(v)
    except InvalidInput as e:
        raise Invalid(f"{name}: {e}", name, key="email") from None


def _addresses(name: str, v: Any) -> list[str]:
    if not isinstance(v, list) or len(v) > MAX_MEMBER_CHANGES:
        raise Invalid(f"{name} must be a list of at most {MAX_MEMBER_CHANGES} addresses", name, key="list",
                      limit=MAX_MEMBER_CHANGES)
    return [_address(name, a) for a in v]


def _one_of(values) -> Callable[[str, Any], str]:
    def check(name: str, v: Any) -> str:
        if v not in values:
            raise Invalid(f"{name} must be one of {', '.join(values)}", name, key="choice", values=", ".join(values))
        return v
    return check


def _optional(check):
    return lambda name, v: None if v is None or v == "" else check(name, v)


def _password(name: str, v: Any) -> str:
    if not isinstance(v, str) or not MIN_PASSWORD <= len(v) <= MAX_PASSWORD:
        raise Invalid(f"{name} must have {MIN_PASSWORD} to {MAX_PASSWORD} characters", name, key="password",
                      min=MIN_PASSWORD, max=MAX_PASSWORD)
    return v


ROLES = tuple(r.value for r in Role)
_CODE = _text(64)
ACCOUNT_CREATE = {"address": _address, "display_name": _text(MAX_NAME), "department": _optional(_CODE),
                  "role": _one_of(ROLES), "quota_bytes": _count, "quota_messages": _count,
                  "password": _password}
ACCOUNT_UPDATE = {"display_name": _text(MAX_NAME), "department": _optional(_CODE), "role": _one_of(ROLES),
                  "enabled": _flag, "quota_bytes": _count, "quota_messages": _count}
DEPARTMENT_CREATE = {"code": _CODE, "name": _text(MAX_NAME), "parent": _optional(_CODE),
                     "kind": _one_of(DEPARTMENT_KINDS)}
DEPARTMENT_UPDATE = {"name": _text(MAX_NAME), "leader": _optional(_address)}
GROUP_CREATE = {"address": _address, "name": _text(MAX_NAME), "post_policy": _one_of(POST_POLICIES),
                "department": _optional(_CODE)}
GROUP_MEMBERS = {"add": _addresses, "remove": _addresses, "add_posters": _addresses,
                 "remove_posters": _addresses}
ALIAS_CREATE = {"address": _address, "target": _address}


def validated(data: Any, fields: dict, *, required: tuple[str, ...] = ()) -> dict:
    """`data` checked against `fields` (name -> check); unknown or missing fields are Invalid."""
    if not isinstance(data, dict):
        raise Invalid("the request body must be a JSON object")
    for name in data:
        if name not in fields:
            raise Invalid(f"unknown field {name!r}", str(name))
    for name in required:
        if name not in data:
            raise Invalid(f"{name} is required", name, key="required")
    return {name: fields[name](name, v) for name, v in data.items()}


# --- JSON forms of the directory's objects ----------------------------------------------------

def account_json(a: Account) -> dict:
    d = asdict(a)
    d["role"] = a.role.value
    return d


def department_json(d: Department) -> dict:
    return asdict(d)


def group_json(row: GroupRow, g: Group | None = None) -> dict:
    out = {"address": row.address, "name": row.name, "post_policy": row.post_policy,
           "department_id": row.department_id}
    if g is not None:
        out["members"], out["posters"] = list(g.members), list(g.posters)
    return out


def alias_json(row: tuple[str, str, int | None]) -> dict:
    return {"address": row[0], "target": row[1], "department_id": row[2]}


class AdminOps:
    """The operations one signed-in actor may perform; make with `await AdminOps.open(mailboxes, actor)`."""

    def __init__(self, mailboxes: Mailboxes, actor: Account, scope: frozenset[int] | None) -> None:
        self.mb = mailboxes
        self.actor = actor
        self.scope = scope  # department ids the actor may see; None: all (an admin)
        self.dir = DirectoryAdmin(mailboxes.directory)

    @classmethod
    async def open(cls, mailboxes: Mailboxes, actor: Account, *, within: int | None = None) -> AdminOps:
        """`within`: a department id the caller is further limited to (an API token's department)."""
        if not actor.enabled or actor.role not in (Role.ADMIN, Role.DEPARTMENT_ADMIN):
            raise Forbidden("this needs an administrator", key="admin_only")
        admin = DirectoryAdmin(mailboxes.directory)
        scope = None
        if actor.role != Role.ADMIN:
            scope = frozenset() if actor.department_id is None else await admin.subtree(actor.department_id)
        if within is not None:
            limit = await admin.subtree(within)
            scope = limit if scope is None else scope & limit
        return cls(mailboxes, actor, scope)

    @property
    def is_admin(self) -> bool:
        return self.scope is None

    def _sees(self, department_id: int | None) -> bool:
        return self.scope is None or department_id in self.scope

    async def _record(self, action: str, target: str, **detail) -> None:
        """One audit entry and one log line per change (never a secret in `detail`)."""
        await self.mb.directory.audit(self.actor.address, action, target, **detail)
        log.info("admin %s %s %s %s", self.actor.address, action, target,
                 " ".join(f"{k}={v!r}" for k, v in detail.items()))  # repr: a name cannot forge a log line

    async def _department_in_scope(self, code: str | None, field: str) -> int | None:
        """The id of department `code` (None for none) if the actor may put things there."""
        if code is None:
            if not self.is_admin:
                raise Forbidden("a department administrator must name one of its departments", field, key="own_department")
            return None
        try:
            dept = await self.dir.department(code)
        except NotFound:
            raise Invalid(f"no department {code}", field, key="no_department", code=code) from None
        if not self._sees(dept.id):
            raise Forbidden(f"department {code} is not yours to manage", field, key="not_yours", code=code)
        return dept.id

    def _check_role(self, role: str | None) -> None:
        if role == Role.ADMIN.value and not self.is_admin:
            raise Forbidden("only an administrator may make an administrator", "role", key="make_admin")

    # --- accounts ------------------------------------------------------------------------

    async def accounts(self, query: str = "", offset: int = 0, limit: int = 50) -> Page:
        try:
            return await self.dir.search_accounts(query=query, departments=self.scope, offset=offset, limit=limit)
        except InvalidInput as e:
            raise Invalid(str(e), "limit") from None

    async def account(self, address: str) -> Account:
        try:
            acct = await self.mb.directory.account(address)
        except (NotFound, InvalidInput):
            raise Missing("no such account") from None
        if not self._sees(acct.department_id):
            raise Missing("no such account")
        return acct

    async def _changeable(self, address: str) -> Account:
        acct = await self.account(address)
        if acct.role == Role.ADMIN and not self.is_admin:
            raise Forbidden("an administrator's account is managed by administrators", key="admin_account")
        return acct

    async def create_account(self, data: Any) -> tuple[Account, str | None]:
        """The new account and, when no password was given, the generated one (shown once)."""
        v = validated(data, ACCOUNT_CREATE, required=("address",))
        if "department" not in v and not self.is_admin:
            v["department"] = self.actor.department_code
        await self._department_in_scope(v.get("department"), "department")
        self._check_role(v.get("role"))
        generated = None if "password" in v else new_password()
        try:
            acct = await self.mb.add_account(
                v["address"], password=v.get("password", generated), display_name=v.get("display_name", ""),
                department=v.get("department"), role=Role(v.get("role", "user")),
                quota_bytes=v.get("quota_bytes", 0), quota_messages=v.get("quota_messages", 0))
        except AlreadyExists as e:
            raise Conflict(str(e), "address") from None
        except (NotFound, InvalidInput) as e:
            raise Invalid(str(e), "address") from None
        await self._record("account.create", acct.address, department=acct.department_code,
                           role=acct.role.value, quota_bytes=acct.quota_bytes)
        return acct, generated

    async def update_account(self, address: str, data: Any) -> Account:
        acct = await self._changeable(address)
        v = validated(data, ACCOUNT_UPDATE)
        if acct.id == self.actor.id:  # no locking oneself out by a slip of the mouse
            if v.get("enabled") is False:
                raise Forbidden("you cannot disable your own account", "enabled", key="disable_self")
            if v.get("role", acct.role.value) != acct.role.value:
                raise Forbidden("you cannot change your own role", "role", key="own_role")
        if "department" in v:
            await self._department_in_scope(v["department"], "department")
        self._check_role(v.get("role"))
        try:
            new = await self.dir.update_account(acct.address, **v)
        except NotFound as e:  # the department went away since it was checked
            raise Invalid(str(e), "department") from None
        if v:
            await self._record("account.update", acct.address, **v)
        return new

    async def reset_password(self, address: str) -> str:
        """A new generated password (returned once, never logged); the account's web sessions end."""
        acct = await self._changeable(address)
        password = new_password()
        await self.mb.directory.set_password(acct.address, password)
        ended = await WebSessions(self.mb.router.central).end_all(acct.id)
        await self._record("account.reset_password", acct.address, sessions_ended=ended)
        return password

    # --- departments ----------------------------------------------------------------------

    async def departments(self) -> list[Department]:
        return [d for d in await self.dir.departments() if self._sees(d.id)]

    async def department(self, code: str) -> Department:
        try:
            dept = await self.dir.department(code)
        except NotFound:
            raise Missing("no such department") from None
        if not self._sees(dept.id):
            raise Missing("no such department")
        return dept

    async def create_department(self, data: Any) -> Department:
        v = validated(data, DEPARTMENT_CREATE, required=("code", "name"))
        await self._department_in_scope(v.get("parent"), "parent")
        try:
            dept = await self.mb.directory.add_department(v["code"], v["name"], parent=v.get("parent"),
                                                          kind=v.get("kind", "department"))
        except AlreadyExists as e:
            raise Conflict(str(e), "code") from None
        except (InvalidInput, NotFound) as e:
            raise Invalid(str(e), "code") from None
        await self._record("department.create", dept.code, name=dept.name, parent=v.get("parent"))
        if self.scope is not None:
            self.scope = self.scope | {dept.id}
        return dept

    async def update_department(self, code: str, data: Any) -> Department:
        """Rename it and/or name its leader (who approves its held mail, issue 13: administrators only)."""
        dept = await self.department(code)
        v = validated(data, DEPARTMENT_UPDATE)
        if not v:
            raise Invalid("name or leader is required", "name", key="required")
        if "leader" in v:
            if not self.is_admin:
                raise Forbidden("only an administrator may name a department's leader", "leader", key="admin_only")
            try:
                await DepartmentLeaders(self.mb.router.central).set(dept.code, v["leader"])
            except (NotFound, InvalidInput) as e:
                raise Invalid(str(e), "leader", key="leader", address=v["leader"]) from None
        if "name" in v:
            await self.dir.rename_department(dept.code, v["name"])
        await self._record("department.update", dept.code, **v)
        return await self.dir.department(dept.code)

    # --- groups -------------------------------------------------------------------------------

    async def groups(self, query: str = "", offset: int = 0, limit: int = 50) -> Page:
        try:
            return await self.dir.groups(query=query, departments=self.scope, offset=offset, limit=limit)
        except InvalidInput as e:
            raise Invalid(str(e), "limit") from None

    async def group(self, address: str) -> tuple[GroupRow, Group]:
        try:
            row = await self.dir.group_row(address)
        except (NotFound, InvalidInput):
            raise Missing("no such group") from None
        if not self._sees(row.department_id):
            raise Missing("no such group")
        return row, await self.mb.directory.group(row.address)

    async def create_group(self, data: Any) -> tuple[GroupRow, Group]:
        v = validated(data, GROUP_CREATE, required=("address",))
        if "department" not in v and not self.is_admin:
            v["department"] = self.actor.department_code
        await self._department_in_scope(v.get("department"), "department")
        try:
            await self.mb.directory.add_group(v["address"], v.get("name", ""),
                                              post_policy=v.get("post_policy", "domain"),
                                              department=v.get("department"))
        except AlreadyExists as e:
            raise Conflict(str(e), "address") from None
        except (InvalidInput, NotFound) as e:
            raise Invalid(str(e), "address") from None
        await self._record("group.create", v["address"], department=v.get("department"),
                           post_policy=v.get("post_policy", "domain"))
        return await self.group(v["address"])

    async def change_members(self, address: str, data: Any) -> tuple[GroupRow, Group]:
        row, _ = await self.group(address)
        v = validated(data, GROUP_MEMBERS)
        d = self.mb.directory
        if v.get("add") or v.get("remove"):
            await d.set_group_members(row.address, add=v.get("add", []), remove=v.get("remove", []))
        if v.get("add_posters") or v.get("remove_posters"):
            await d.set_group_members(row.address, add=v.get("add_posters", []),
                                      remove=v.get("remove_posters", []), posters=True)
        if any(v.values()):
            await self._record("group.members", row.address, **{k: len(a) for k, a in v.items() if a})
        return await self.group(row.address)

    async def delete_group(self, address: str) -> None:
        row, _ = await self.group(address)
        await self.dir.remove_group(row.address)
        await self._record("group.delete", row.address)

    # --- aliases ---------------------------------------------------------------------------------

    async def aliases(self, query: str = "", offset: int = 0, limit: int = 50) -> Page:
        try:
            return await self.dir.aliases(query=query, departments=self.scope, offset=offset, limit=limit)
        except InvalidInput as e:
            raise Invalid(str(e), "limit") from None

    async def alias(self, address: str) -> tuple[str, str, int | None]:
        try:
            row = await self.dir.alias(address)
        except (NotFound, InvalidInput):
            raise Missing("no such alias") from None
        if not self._sees(row[2]):
            raise Missing("no such alias")
        return row

    async def create_alias(self, data: Any) -> tuple[str, str, int | None]:
        v = validated(data, ALIAS_CREATE, required=("address", "target"))
        if not self.is_admin:
            try:
                target = await self.mb.directory.account(v["target"])
            except NotFound:
                raise Forbidden("a department administrator's alias must point to one of its accounts",
                                "target", key="alias_target") from None
            if not self._sees(target.department_id):
                raise Forbidden("the target account is not in your departments", "target", key="target_not_yours")
        try:
            await self.mb.directory.add_alias(v["address"], v["target"])
        except AlreadyExists as e:
            raise Conflict(str(e), "address") from None
        except (InvalidInput, NotFound) as e:
            raise Invalid(str(e), "address") from None
        await self._record("alias.create", v["address"], to=v["target"])
        return await self.alias(v["address"])

    async def delete_alias(self, address: str) -> None:
        row = await self.alias(address)
        await self.mb.directory.remove_alias(row[0])
        await self._record("alias.delete", row[0], to=row[1])


def new_password() -> str:
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
