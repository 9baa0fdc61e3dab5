"""The organisation address book page (department tree, people, groups, search) and its completion JSON for compose."""

from __future__ import annotations

from aiohttp import web

from mailboxes.addressbook import MAX_QUERY_CHARS, MAX_RESULTS, Person
from mailboxes.model import Department

from ..context import ACCOUNT, WEBMAIL
from ..sessions import require_account

COMPLETE_PEOPLE = 8  # people offered by one completion request
COMPLETE_GROUPS = 4  # groups offered by one completion request
MAX_OFFSET = 100_000  # paging offsets beyond this are cut (a department is never this large)


def _tree(departments: list[Department]) -> list[tuple[Department, int]]:
    """Departments in tree order with their depth; a parent missing or in a cycle makes a node a root."""
    ids = {d.id for d in departments}
    children: dict[int | None, list[Department]] = {}
    for d in departments:
        children.setdefault(d.parent_id if d.parent_id in ids else None, []).append(d)
    out: list[tuple[Department, int]] = []
    seen: set[int] = set()
    stack = [(d, 0) for d in reversed(children.get(None, []))]
    while stack:
        d, depth = stack.pop()
        if d.id in seen:
            continue
        seen.add(d.id)
        out.append((d, depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(d.id, [])))
    out.extend((d, 0) for d in departments if d.id not in seen)  # cycles: shown flat, never lost
    return out


def _offset(text: str) -> int:
    return min(int(text), MAX_OFFSET) if text.isdigit() and len(text) < 9 else 0


async def page(request: web.Request) -> web.Response:
    require_account(request)
    wm = request.app[WEBMAIL]
    book = wm.mailboxes.addressbook
    q = request.query.get("q", "")[:MAX_QUERY_CHARS]
    dept = request.query.get("dept", "")[:64]
    offset = _offset(request.query.get("offset", ""))
    departments = await book.departments()
    people: list[Person] = []
    more = False
    found_groups = []
    if q.strip():
        people = await book.search_people(q)
        found_groups = await book.search_groups(q)
    elif dept:
        people, more = await book.department_people(dept, offset=offset)
    current = next((d for d in departments if d.code == dept.lower()), None)
    return wm.render(request, "addressbook.html", q=q, tree=_tree(departments), dept=current, people=people,
                     offset=offset, page_size=MAX_RESULTS, more=more, found_groups=found_groups,
                     groups=await book.groups())


async def complete(request: web.Request) -> web.Response:
    """A few people and groups matching ?q= as JSON: [{name, address, department, kind}]."""
    if request.get(ACCOUNT) is None:
        return web.json_response({"error": "sign in first"}, status=401)
    book = request.app[WEBMAIL].mailboxes.addressbook
    q = request.query.get("q", "")[:MAX_QUERY_CHARS]
    people = await book.search_people(q, limit=COMPLETE_PEOPLE)
    groups = await book.search_groups(q, limit=COMPLETE_GROUPS)
    return web.json_response(
        [{"name": p.name, "address": p.address, "department": p.department_name or "", "kind": "person"}
         for p in people]
        + [{"name": g.name, "address": g.address, "department": "", "kind": "group"} for g in groups])
