"""The folder tree with unread counts and one folder's message list (paged, sorted by date, unread and flag marks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from aiohttp import web

from mailboxes.errors import NotFound
from mailboxes.mime import head_from_json
from mailboxes.model import Account, Flag, Folder
from mailboxes.store import INBOX

from mailboxes import acl

from .. import i18n
from ..context import ACCOUNT, LOCALE, WEBMAIL
from ..sessions import require_account
from ..sharedread import SHARED, readable
from ..sharedread import folder as readable_folder

PAGE_SIZE = 50  # messages per list page
MAX_QUERY_CHARS = 200  # of a search, after collapsing white space
MAX_PAGE = 1_000_000
DELIMITER = "/"  # the folder hierarchy separator (as IMAP shows it)
SPECIAL_NAMES = ("INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive")


@dataclass(frozen=True)
class FolderEntry:
    name: str
    label: str
    depth: int
    unread: int
    messages: int
    special_use: str | None


@dataclass(frozen=True)
class Row:
    uid: int
    sender: str
    subject: str
    date: datetime
    unread: bool
    flagged: bool
    href: str


def folder_label(name: str, _) -> str:
    leaf = name.rsplit(DELIMITER, 1)[-1]
    return _(f"folder_{name}") if name in SPECIAL_NAMES else leaf


def folder_href(name: str, **extra) -> str:
    return "/mail?" + urlencode({"folder": name, **extra})


def message_href(folder: str, uid: int) -> str:
    return "/message?" + urlencode({"folder": folder, "uid": uid})


async def folder_tree(request: web.Request, account: Account, _) -> list[FolderEntry]:
    """Every folder of the account with its unread count; INBOX and the special folders first, then by name."""
    store = request.app[WEBMAIL].mailboxes.store
    folders = await store.folders(account)
    shared = readable(await acl.shared_with(store, account))  # last, as Shared/<owner>/<folder>
    counts = await store.counts(folders + shared)

    def order(f: Folder):
        top = f.name.split(DELIMITER, 1)[0]
        rank = SPECIAL_NAMES.index(top) if top in SPECIAL_NAMES else len(SPECIAL_NAMES)
        return rank, f.name.lower()
    out = []
    for f in sorted(folders, key=order):
        messages, unseen = counts[f.ref]
        out.append(FolderEntry(f.name, folder_label(f.name, _), f.name.count(DELIMITER), unseen, messages,
                               f.special_use))
    for f in shared:
        messages, unseen = counts[f.ref]
        out.append(FolderEntry(f.name, f.name[len(SHARED) + 1:], 0, unseen, messages, None))
    return out


def _int_arg(request: web.Request, name: str, default: int, top: int) -> int:
    v = request.query.get(name, "")
    return min(int(v), top) if v.isdigit() and len(v) <= 9 else default


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/mail" if request.get(ACCOUNT) else "/login")


async def _listed(store, ref, query: str, count: int, page: int, newest_first: bool):
    """(count, page, metas): one page of the folder, or of its search hits when there is a query.

    The search box uses the store's word index (Chinese runs as substrings, English words by prefix,
    in subject, addresses and body), counted and paged inside the database; a query with no
    indexable terms (punctuation) takes the substring index (RFC 3501 §6.4.4 TEXT, as IMAP SEARCH).
    """
    def search(at: int):
        return store.search_page(ref, query, offset=(at - 1) * PAGE_SIZE, limit=PAGE_SIZE, newest_first=newest_first)
    hits = None
    if query:
        found = await search(page)
        if found is not None:
            count, metas = found
            last = max(1, -(-count // PAGE_SIZE))
            if page > last:  # past the end: the last page
                page = last
                count, metas = await search(page) or (0, [])
            return count, page, metas
        hits = await store.search_substring(ref, "text", query)
        count = len(hits)
    page = min(page, max(1, -(-count // PAGE_SIZE)))
    return count, page, await store.message_page(ref, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE,
                                                 newest_first=newest_first, uids=hits)


async def folder_page(request: web.Request) -> web.Response:
    account = require_account(request)
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    name = request.query.get("folder", INBOX)
    try:
        folder, _owner, _rights = await readable_folder(wm.mailboxes.store, account, name)
    except NotFound:
        raise web.HTTPNotFound(text=_("not_found"))
    tree = await folder_tree(request, account, _)
    query = " ".join(request.query.get("q", "").split())[:MAX_QUERY_CHARS]
    newest_first = request.query.get("order", "desc") != "asc"
    count, page, metas = await _listed(wm.mailboxes.store, folder.ref, query,
                                       next((e.messages for e in tree if e.name == folder.name), 0),
                                       max(1, _int_arg(request, "page", 1, MAX_PAGE)), newest_first)
    pages = max(1, -(-count // PAGE_SIZE))
    parsed = await wm.mailboxes.store.parsed(folder.ref.partition, [m.blob_id for m in metas])
    rows = []
    for m in metas:
        env = head_from_json(parsed[m.blob_id]).envelope
        sender = next((a.name_decoded or a.addr_spec for a in env.from_ if a.addr_spec), "") or ""
        rows.append(Row(m.uid, sender, env.subject_decoded.strip(), m.internal_date,
                        not m.flags & Flag.SEEN, bool(m.flags & Flag.FLAGGED), message_href(folder.name, m.uid)))
    order = "desc" if newest_first else "asc"
    keep = {"q": query} if query else {}
    return wm.render(request, "folder.html", folders=tree, folder=folder, folder_label=folder_label(folder.name, _),
                     rows=rows, page=page, pages=pages, count=count, order=order, query=query,
                     prev_href=folder_href(folder.name, page=page - 1, order=order, **keep) if page > 1 else None,
                     next_href=folder_href(folder.name, page=page + 1, order=order, **keep) if page < pages else None,
                     sort_href=folder_href(folder.name, order="asc" if newest_first else "desc", **keep),
                     folder_href=folder_href)
