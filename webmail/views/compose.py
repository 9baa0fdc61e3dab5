"""Compose, reply, reply-all and forward: the message goes through delivery's one submit() (as SMTP submission does), a copy into Sent."""

from __future__ import annotations

import dataclasses
import functools

from aiohttp import web

from delivery.submit import Client, Submission
from mailboxes.errors import StoreError
from mailboxes.ingest import prepare
from mailboxes.mailsettings import signature_for
from mailboxes.model import Flag
from mailboxes.offload import offload_if_large

from .. import compose, i18n, render
from ..context import LOCALE, WEBMAIL
from ..sessions import require_account
from .mail import folder_href, folder_tree
from .message import open_message

MAX_UPLOAD_BYTES = 25 << 20  # a whole compose request with its attachments
MAX_UPLOADS = 20
MODES = ("new", "reply", "replyall", "forward")


async def form(request: web.Request) -> web.Response:
    account = require_account(request)
    _ = i18n.translator(request[LOCALE])
    mode = request.query.get("mode", "new")
    mode = mode if mode in MODES else "new"
    draft = compose.Draft(to=request.query.get("to", "")[:compose.MAX_SUBJECT_CHARS])
    source = None
    if mode != "new":
        m = await open_message(request, account)
        body = await offload_if_large(len(m.raw), render.content, m.raw, m.parsed)
        text = body.text if body.text is not None else render.html_text(body.html or "")
        who = next((a.name_decoded or a.addr_spec for a in m.parsed.envelope.from_ if a.addr_spec), "")
        intro = _("quote_intro", who=who)
        draft = (compose.forward_draft(m.parsed, text, intro=intro) if mode == "forward"
                 else compose.reply_draft(account, m.parsed, text, mode=mode, intro=intro))
        source = (m.folder.name, m.meta.uid)
    signature = await signature_for(request.app[WEBMAIL].mailboxes.settings, account)
    if signature:  # RFC 3676 §4.3 delimiter; above the quote in a reply or forward
        draft = dataclasses.replace(draft, body="\n\n-- \n" + signature + draft.body)
    return await _page(request, account, draft, mode, source)


async def _page(request, account, draft: compose.Draft, mode: str, source, *, error: str | None = None,
                status: int = 200) -> web.Response:
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    tree = await folder_tree(request, account, _)
    inbox = next(e for e in tree if e.name == "INBOX")
    return wm.render(request, "compose.html", status=status, folders=tree, folder=inbox, folder_href=folder_href,
                     draft=draft, mode=mode, source=source, error=error, max_upload=MAX_UPLOAD_BYTES)


async def send(request: web.Request) -> web.Response:
    account = require_account(request)
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    data = await request.post()

    def field(name: str, limit: int = compose.MAX_BODY_CHARS) -> str:
        v = data.get(name, "")
        return v[:limit] if isinstance(v, str) else ""
    mode = field("mode", 16)
    mode = mode if mode in MODES else "new"
    draft = compose.Draft(field("to", 8192), field("cc", 8192), field("subject", compose.MAX_SUBJECT_CHARS),
                          field("body"), field("in_reply_to", 998), field("references", 8192))
    uploads = [compose.Upload(f.filename or "attachment", f.content_type or "application/octet-stream", f.file.read())
               for f in data.getall("attachments", []) if isinstance(f, web.FileField) and f.filename][:MAX_UPLOADS]
    src_folder, src_uid = field("source_folder", 1024), field("source_uid", 12)
    source = (src_folder, src_uid) if src_folder and src_uid else None
    original = await open_message(request, account, src_folder, src_uid) if source else None
    if wm.submit is None:
        raise web.HTTPServiceUnavailable(text=_("error"))
    forwarded = original.raw if original is not None and mode == "forward" else None
    name = (original.parsed.envelope.subject_decoded.strip() or "message") + ".eml" if original else "message.eml"
    size = sum(len(u.data) for u in uploads) + len(forwarded or b"") + len(draft.body)
    try:  # base64 of large uploads off the loop
        message, rcpts = await offload_if_large(size, functools.partial(
            compose.build, account, draft, hostname=wm.hostname, now=wm.clock(), uploads=uploads,
            forwarded=forwarded, forwarded_name=name))
    except compose.ComposeError as exc:
        return await _page(request, account, draft, mode, source, status=400,
                           error=_(exc.key, detail=exc.detail) if exc.detail else _(exc.key, detail=""))
    client = Client(request.remote or "-", "webmail", "HTTPS" if request.secure else "HTTP")
    outcome = await wm.submit(Submission(account.address, tuple(rcpts), message, account, client, origin="webmail"))
    if not outcome.accepted:
        return await _page(request, account, draft, mode, source, status=400,
                           error=_("send_refused", detail=outcome.reply.text))
    store = wm.mailboxes.store
    sent = next((f for f in await store.folders(account) if f.special_use == "\\Sent"), None)
    if sent is not None:
        try:
            prepared = await offload_if_large(len(message), prepare, message)
            await store.append(account, sent.name, prepared, flags=int(Flag.SEEN))
        except StoreError:  # sent, but no room for the copy: the mail is gone out all the same
            pass
    if original is not None and mode in ("reply", "replyall"):
        await store.store_flags(original.folder.ref, [original.meta.uid], "add", int(Flag.ANSWERED))
    refused = ", ".join(r for r, _reply in outcome.refused)
    target = folder_href(sent.name if sent is not None else "INBOX", **({"refused": refused} if refused else {}))
    raise web.HTTPSeeOther(target)
