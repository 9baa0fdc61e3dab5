"""Expands an event's recipients (addresses, group addresses, department codes) to local accounts through the directory.

- An entry with "@" is resolved as submit() resolves it (aliases, groups, nested, disabled accounts
  left out); only local recipients are taken: a source token is no relay to the outside.
- An entry without "@" is a department code: the enabled accounts of that department and of every
  department below it.
- What names nobody is reported back (`Unknown`), never silently dropped.
- One `Expander` serves one request: departments and answers are looked up once per request.
"""

from __future__ import annotations

from dataclasses import dataclass

from delivery.policy import PolicyError, parse_path
from delivery.submit import DirectoryCache
from mailboxes.model import Account, Department

MAX_EXPANDED = 10_000  # people one event may reach


class TooMany(ValueError):
    pass


@dataclass(frozen=True)
class Unknown:
    recipient: str
    reason: str

    def json(self) -> dict:
        return {"recipient": self.recipient, "reason": self.reason}


class Expander:
    def __init__(self, directory: DirectoryCache) -> None:
        self.directory = directory
        self._departments: dict[str, Department] | None = None
        self._children: dict[int | None, list[Department]] = {}
        self._dept_people: dict[str, list[Account]] = {}

    async def expand(self, entries: tuple[str, ...]) -> tuple[list[tuple[int, str]], list[Unknown]]:
        """((id, address) of the accounts reached, in order, each once; the entries that reached nobody)."""
        people: dict[int, str] = {}
        unknown: list[Unknown] = []
        for entry in entries:
            found, why = await (self._address(entry) if "@" in entry else self._department(entry))
            if why is not None:
                unknown.append(Unknown(entry, why))
            for a in found:
                people.setdefault(a.id, a.address)
            if len(people) > MAX_EXPANDED:
                raise TooMany(f"the recipients reach more than {MAX_EXPANDED} people")
        return list(people.items()), unknown

    async def _address(self, entry: str) -> tuple[list[Account], str | None]:
        try:
            addr = str(parse_path(f"<{entry}>", True))
        except PolicyError:
            return [], "not a valid address"
        if addr.rpartition("@")[2].lower() not in await self.directory.local_domains():
            return [], "not a local address"
        res = await self.directory.resolve(addr)
        if res is None:
            return [], "no such address"
        if not res.local:
            return [], "reaches no enabled local account"
        return list(res.local), None

    async def _department(self, code: str) -> tuple[list[Account], str | None]:
        code = code.lower()
        if self._departments is None:
            depts = await self.directory.mb.directory.list_departments()
            self._departments = {d.code: d for d in depts}
            for d in depts:
                self._children.setdefault(d.parent_id, []).append(d)
        top = self._departments.get(code)
        if top is None:
            return [], "no such address or department"
        out: list[Account] = []
        todo, seen = [top], set()
        while todo:
            d = todo.pop()
            if d.id in seen:
                continue
            seen.add(d.id)
            if d.code not in self._dept_people:
                self._dept_people[d.code] = [a for a in await self.directory.mb.directory.list_accounts(
                    department=d.code) if a.enabled]
            out.extend(self._dept_people[d.code])
            todo.extend(self._children.get(d.id, ()))
        if not out:
            return [], "department has no enabled accounts"
        return out, None
