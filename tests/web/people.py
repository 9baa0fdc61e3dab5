"""A small organisation for the admin tests (departments, accounts of every role, groups, aliases, API tokens) and a JSON API client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from mailboxes.apitokens import ApiTokens
from mailboxes.model import Role

from .harness import PASSWORD

# Who is who: city > fin > audit, and hr beside city. fa administers fin (and audit below it).
ACCOUNTS = (
    # address, department, role, name
    ("fa@city.test", "fin", Role.DEPARTMENT_ADMIN, "财务管理员"),
    ("f1@city.test", "fin", Role.USER, "钱一"),
    ("a1@city.test", "audit", Role.USER, "审计一"),
    ("h1@city.test", "hr", Role.USER, "人事一"),
    ("ha@city.test", "hr", Role.DEPARTMENT_ADMIN, "人事管理员"),
    ("boss@city.test", "fin", Role.ADMIN, "局长"),
)


@dataclass
class Org:
    tokens: dict[str, str]  # address -> bearer secret


def make_org(web) -> Org:
    """The departments, accounts, groups and aliases above; alice is an admin; a token for each admin and bob."""
    async def go() -> Org:
        mb, d = web.mb, web.mb.directory
        await d.add_department("city", "市局")
        await d.add_department("fin", "财务处", parent="city")
        await d.add_department("audit", "审计科", parent="fin")
        await d.add_department("hr", "人事处")
        for address, dept, role, name in ACCOUNTS:
            await mb.add_account(address, password=PASSWORD, display_name=name, department=dept, role=role)
        from mailboxes.admindir import DirectoryAdmin

        await DirectoryAdmin(d).update_account("alice@city.test", role="admin")
        await d.add_group("fin-all@city.test", "财务全体", department="fin")
        await d.add_group("hr-all@city.test", "人事全体", department="hr")
        await d.set_group_members("hr-all@city.test", add=["h1@city.test"])
        await d.add_alias("pay@city.test", "f1@city.test")
        await d.add_alias("jobs@city.test", "h1@city.test")
        tokens = {}
        for who in ("alice@city.test", "fa@city.test", "bob@city.test", "boss@city.test"):
            acct = await d.account(who)
            tokens[who], _ = await ApiTokens(mb.router.central).create(acct.id, label="test")
        return Org(tokens)
    return web.run(go())


class Api:
    """Calls /api/v1 as one token's owner; `check(method, path, status, body)` sees every answer."""

    def __init__(self, web, token: str, check=None) -> None:
        self.base = web.url + "/api/v1"
        self.token = token
        self.check = check

    async def __call__(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None
                       ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {"Authorization": f"Bearer {self.token}"}
        kw: dict[str, Any] = {"data": raw} if raw is not None else ({"json": body} if body is not None else {})
        async with aiohttp.ClientSession() as s, s.request(method, self.base + path, headers=headers, **kw) as r:
            data = await r.json(content_type=None) if r.status != 204 else None
        if self.check is not None:
            self.check(method, path, r, data)
        return r.status, data, r
