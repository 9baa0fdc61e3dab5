"""Reading a message (marked \\Seen through the store, as IMAP sees it), its sandboxed HTML frame, attachment downloads and the actions on it.

Every message is named by (folder name, UID) and the folder is looked up among the
signed-in account's own folders, so changing a name or UID in a URL can reach no other
account's mail; the three reading routes also open folders shared with the account with
the right to read (``Shared/<owner>/<folder>``, webmail/sharedread.py), read-only, each
read audited, and so does compose (a reply to or forward of a shared message). The actions
(flag, move, delete) open own folders only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from mailboxes.errors import NotFound, UnderHold
from mailboxes.mime import ParsedMessage
from mailboxes.offload import offload_if_large
from mailboxes.ranges import RANGED_OCTETS, Ranges, mostly, read_ranges
from mailboxes.model import Account, Flag, Folder, MessageMeta

from .. import i18n, render
from ..context import LOCALE, SESSION, WEBMAIL
from ..sharedread import SHARED, ReadAudit, may
from ..sharedread import folder as readable_folder
from ..sessions import require_account
from .mail import folder_href, folder_label, folder_tree, message_href
from .readstatus import panel as readstatus_panel

MAX_UID = 0xFFFFFFFF  # RFC 3501 §2.3.1.1: UIDs are 32-bit

# The HTML frame's own policy (the page's is stricter about framing, looser about nothing).
# `sandbox` without allow-scripts or allow-same-origin: no script runs, the frame has an
# opaque origin; links may open in a new tab (outside the sandbox), nothing else.
FRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"
FRAME_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src {img}; font-src 'none'; "
             "form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox " + FRAME_SANDBOX)
IMAGES_BLOCKED = "data:"
IMAGES_ALLOWED = "data: https: http:"
DOWNLOAD_CSP = "default-src 'none'; sandbox"


@dataclass(frozen=True)
class Opened:
    folder: Folder
    meta: MessageMeta
    raw: bytes | Ranges  # Ranges: read by the ranges open_message was asked for
    parsed: ParsedMessage
    owner: str | None = None  # another account's address when the folder is shared with this one
    rights: str = ""  # the account's rights there (RFC 4314) when it is shared; "" in its own folders

    def may(self, right: str) -> bool:
        return may(self.owner, self.rights, right)


SHARED_READS = web.AppKey("shared_reads", ReadAudit)


async def open_message(request: web.Request, account: Account, folder_name: str | None = None,
                uid_text: str | None = None, *, shared: bool = False, part: str = "",
                spans: Callable[[ParsedMessage], list[tuple[int, int]]] | None = None) -> Opened:
    """The message the request names; `shared`: also in folders shared with the account (read-only),
    that read then audited (`part`: the attachment downloaded).

    ``spans``: the byte ranges the page reads of it (render.content_spans, part_spans); a large
    message is then read by those ranges only (mailboxes/ranges.py), and `Opened.raw` is sliced
    as its bytes would be. Without it the message is read whole.
    """
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    name = folder_name if folder_name is not None else request.query.get("folder", "")
    uid_text = uid_text if uid_text is not None else request.query.get("uid", "")
    if not name or not uid_text.isdigit() or len(uid_text) > 10 or not 0 < int(uid_text) <= MAX_UID:
        raise web.HTTPNotFound(text=_("not_found"))
    owner, rights = None, ""
    try:
        if shared:
            folder, owner, rights = await readable_folder(wm.mailboxes.store, account, name)
        else:
            folder = await wm.mailboxes.store.folder(account, name)
        meta = await wm.mailboxes.store.message(folder.ref, int(uid_text))
    except NotFound:
        raise web.HTTPNotFound(text=_("not_found"))
    if meta is None:
        raise web.HTTPNotFound(text=_("not_found"))
    store = wm.mailboxes.store
    parsed = ParsedMessage.from_json((await store.parsed(folder.ref.partition, [meta.blob_id]))[meta.blob_id])
    wanted = spans(parsed) if spans is not None and meta.size >= RANGED_OCTETS else None
    if wanted is not None and not mostly(wanted, meta.size):
        raw: bytes | Ranges = await read_ranges(store, folder.ref.partition, meta.blob_id, meta.size, wanted)
    else:
        raw = await store.raw(folder.ref.partition, meta.blob_id)
    if owner is not None:
        await request.app[SHARED_READS].read(wm.mailboxes.directory, str(request[SESSION].id), account, owner,
                                             folder, meta.uid, part)
    return Opened(folder, meta, raw, parsed, owner, rights)


def _addresses(addrs) -> str:
    out = []
    for a in addrs:
        if a.addr_spec is None:
            continue
        out.append(f"{a.name_decoded} <{a.addr_spec}>" if a.name_decoded else a.addr_spec)
    return ", ".join(out)


async def read(request: web.Request) -> web.Response:
    account = require_account(request)
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    m = await open_message(request, account, shared=True, spans=render.content_spans)
    # Opening marks it read, through the store (IMAP sessions see it); in a shared folder only with the right s.
    if not m.meta.flags & Flag.SEEN and m.may("s"):
        await wm.mailboxes.store.store_flags(m.folder.ref, [m.meta.uid], "add", int(Flag.SEEN))
    body = await offload_if_large(len(m.raw), render.content, m.raw, m.parsed)
    view = "text" if request.query.get("view") == "text" or body.html is None else "html"
    images = request.query.get("images") == "1"
    env = m.parsed.envelope
    base = {"folder": m.folder.name, "uid": str(m.meta.uid)}
    tree = await folder_tree(request, account, _)
    return wm.render(
        request, "message.html", folders=tree, folder=m.folder, folder_label=folder_label(m.folder.name, _),
        folder_href=folder_href, uid=m.meta.uid, subject=env.subject_decoded.strip(),
        sender=_addresses(env.from_), to=_addresses(env.to), cc=_addresses(env.cc),
        date=env.date_parsed or m.meta.internal_date, flagged=bool(m.meta.flags & Flag.FLAGGED),
        view=view, has_html=body.html is not None, has_text=body.text is not None, text=body.text or "",
        frame_src="/message/body?" + _query({**base, "images": "1" if images else "0"}),
        images=images, images_href="/message?" + _query({**base, "images": "1"}),
        text_href="/message?" + _query({**base, "view": "text"}), html_href="/message?" + _query(base),
        attachments=[(".".join(map(str, a.path)), a.filename or f"part-{'.'.join(map(str, a.path))}",
                      a.content_type, a.size) for a in m.parsed.attachments],
        part_href=lambda path: "/message/part?" + _query({**base, "part": path}),
        back_href=folder_href(m.folder.name),
        compose_href=lambda mode: "/compose?" + _query({**base, "mode": mode}), targets=[e for e in tree if e.name != m.folder.name and not e.name.startswith(SHARED + "/")],
        readstatus=await readstatus_panel(request, account, m.folder.special_use, env.message_id))


def _query(values: dict) -> str:
    return urlencode(values)


async def body_frame(request: web.Request) -> web.Response:
    """The sanitised HTML of a message, for the sandboxed frame only; its CSP blocks remote loads unless allowed."""
    account = require_account(request)
    m = await open_message(request, account, shared=True, spans=render.content_spans)
    body = await offload_if_large(len(m.raw), render.content, m.raw, m.parsed)  # decode and nh3 off the loop
    img = IMAGES_ALLOWED if request.query.get("images") == "1" else IMAGES_BLOCKED
    response = web.Response(text=render.frame_document(body.html or ""), content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = FRAME_CSP.format(img=img)
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


async def download_part(request: web.Request) -> web.Response:
    account = require_account(request)
    _ = i18n.translator(request[LOCALE])
    path = render.parse_path(request.query.get("part", ""))
    m = await open_message(request, account, shared=True, part=".".join(map(str, path)) if path else "",
                           spans=lambda parsed: render.part_spans(parsed, path) if path else [])
    got = await offload_if_large(len(m.raw), render.part_bytes, m.raw, m.parsed, path) if path else None
    if got is None:
        raise web.HTTPNotFound(text=_("not_found"))
    part, data = got
    name = next((a.filename for a in m.parsed.attachments if a.path == path), None) or part.filename
    response = web.Response(body=data, content_type="application/octet-stream")
    response.headers["Content-Disposition"] = render.content_disposition(name, f"part-{'.'.join(map(str, path))}")
    response.headers["Content-Security-Policy"] = DOWNLOAD_CSP
    return response


async def action(request: web.Request) -> web.Response:
    """Flag, unflag, mark read or unread, move, delete to Trash: the same store calls IMAP STORE and MOVE make."""
    account = require_account(request)
    wm = request.app[WEBMAIL]
    store = wm.mailboxes.store
    _ = i18n.translator(request[LOCALE])
    form = await request.post()
    m = await open_message(request, account, str(form.get("folder", "")), str(form.get("uid", "")))
    do = str(form.get("do", ""))
    flag_ops = {"read": ("add", Flag.SEEN), "unread": ("remove", Flag.SEEN),
                "flag": ("add", Flag.FLAGGED), "unflag": ("remove", Flag.FLAGGED)}
    if do in flag_ops:
        mode, flag = flag_ops[do]
        await store.store_flags(m.folder.ref, [m.meta.uid], mode, int(flag))
        raise web.HTTPSeeOther(folder_href(m.folder.name) if do == "unread" else message_href(m.folder.name, m.meta.uid))
    if do in ("move", "delete"):
        if do == "delete":
            target = next((f for f in await store.folders(account) if f.special_use == "\\Trash"), None)
        else:
            try:
                target = await store.folder(account, str(form.get("to", "")))
            except NotFound:
                target = None
        if target is None:
            raise web.HTTPNotFound(text=_("not_found"))
        if target.ref == m.folder.ref:
            if do == "delete":  # deleting in Trash removes it for ever
                await store.store_flags(m.folder.ref, [m.meta.uid], "add", int(Flag.DELETED))
                _gone, kept = await store.expunge_report(m.folder.ref, [m.meta.uid])
                if kept:  # the message stays, with \\Deleted; the user is told why (docs/retention.md)
                    raise UnderHold(f"under {next(iter(kept.values())).label}")
        else:
            await store.move(account, m.folder.ref, [m.meta.uid], target.ref)
        raise web.HTTPSeeOther(folder_href(m.folder.name))
    raise web.HTTPBadRequest(text=_("forbidden"))
