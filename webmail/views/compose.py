"""Compose, reply, reply-all and forward: the message goes through delivery's one submit() (as SMTP submission does), a copy into Sent."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging

from aiohttp import web

from delivery.submit import Client, Submission
from mailboxes.errors import AlreadyExists, StoreError
from mailboxes.ingest import prepare
from mailboxes.mailsettings import signature_for
from mailboxes.model import Flag
from mailboxes.offload import offload_if_large

from .. import compose, i18n, render, richtext
from ..context import LOCALE, WEBMAIL
from ..sessions import require_account
from . import approvals as approval_views
from .mail import folder_href, folder_tree
from .message import open_message
from .uploads import UPLOADS, limit_text

log = logging.getLogger("postroom.webmail.compose")

MAX_UPLOAD_BYTES = 25 << 20  # a whole compose request with its attachments
MAX_UPLOAD_IDS = 50  # spooled uploads named by one form
MAX_UPLOADS = 20
MODES = ("new", "reply", "replyall", "forward")


async def form(request: web.Request) -> web.Response:
    account = require_account(request)
    _ = i18n.translator(request[LOCALE])
    mode = request.query.get("mode", "new")
    mode = mode if mode in MODES else "new"
    if request.query.get("draft"):  # continue a saved draft as it was left (no second signature)
        uid = request.query["draft"]
        _opened, draft, kept, link = await open_draft(request, account, uid)
        source = (link.folder, link.uid) if link.mode in ("reply", "replyall") and link.folder and link.uid else None
        mode = link.mode if link.mode in MODES else "new"
        return await _page(request, account, draft, mode, source, draft_uid=uid, kept=kept)
    draft = compose.Draft(to=request.query.get("to", "")[:compose.MAX_SUBJECT_CHARS])
    source = None
    if mode != "new":  # the original may be in a folder shared with the account (reading it is enough)
        m = await open_message(request, account, shared=True)
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
                status: int = 200, draft_uid: str = "", kept: list[compose.Upload] = (),
                upload_ids: list[str] = ()) -> web.Response:
    wm = request.app[WEBMAIL]
    spool = request.app[UPLOADS]
    spooled = [e for e in (spool.get(account.id, uid) for uid in upload_ids) if e is not None]
    _ = i18n.translator(request[LOCALE])
    tree = await folder_tree(request, account, _)
    inbox = next(e for e in tree if e.name == "INBOX")
    if draft.body_html:  # only cleaned markup goes back into the editor
        draft = dataclasses.replace(draft, body_html=richtext.clean(draft.body_html))
    return wm.render(request, "compose.html", status=status, folders=tree, folder=inbox, folder_href=folder_href,
                     labels=approval_views.labels(request), draft=draft, mode=mode, source=source, error=error, max_upload=MAX_UPLOAD_BYTES,
                     draft_uid=draft_uid, kept=kept, spooled=spooled, max_file=spool.max_file_bytes,
                     max_compose=spool.max_compose_bytes, max_file_text=limit_text(spool.max_file_bytes),
                     saved=bool(request.query.get("saved")))


@dataclasses.dataclass
class Posted:
    """The compose form as posted: values, new uploads, the message replied to and the draft it continues."""

    mode: str
    draft: compose.Draft
    uploads: list[compose.Upload]  # files posted in the form itself (the page without its script)
    source: tuple[str, str] | None
    draft_uid: str
    upload_ids: list[str] = dataclasses.field(default_factory=list)  # files in the upload spool

    @property
    def link(self) -> compose.DraftLink:
        folder, uid = self.source or ("", "")
        return compose.DraftLink(self.mode, folder, uid) if self.mode != "forward" else compose.DraftLink(self.mode)


async def read_form(request: web.Request) -> Posted:
    data = await request.post()

    def field(name: str, limit: int = compose.MAX_BODY_CHARS) -> str:
        v = data.get(name, "")
        return v[:limit] if isinstance(v, str) else ""
    mode = field("mode", 16)
    mode = mode if mode in MODES else "new"
    draft = compose.Draft(field("to", 8192), field("cc", 8192), field("subject", compose.MAX_SUBJECT_CHARS),
                          field("body"), field("in_reply_to", 998), field("references", 8192),
                          field("body_html", richtext.MAX_HTML_CHARS), field("bcc", 8192))
    uploads = [compose.Upload(f.filename or "attachment", f.content_type or "application/octet-stream", f.file.read())
               for f in data.getall("attachments", []) if isinstance(f, web.FileField) and f.filename][:MAX_UPLOADS]
    src_folder, src_uid = field("source_folder", 1024), field("source_uid", 12)
    source = (src_folder, src_uid) if src_folder and src_uid else None
    ids = [v for v in data.getall("upload", []) if isinstance(v, str)][:MAX_UPLOAD_IDS]
    return Posted(mode, draft, uploads, source, field("draft_uid", 12), list(dict.fromkeys(ids)))


async def attachments(request: web.Request, account, posted: Posted, kept: list[compose.Upload]
                      ) -> list[compose.Upload]:
    """Everything the message carries: the continued draft's, the form's own files and the spooled uploads.

    ComposeError (404) when an upload id is not one of this account's live uploads (expired, sent, or
    another account's), (413) when together they pass the per-message limit.
    """
    spool = request.app[UPLOADS]
    entries = [spool.get(account.id, uid) for uid in posted.upload_ids]
    if any(e is None for e in entries):
        raise compose.ComposeError("upload_gone", status=404)
    total = sum(e.size for e in entries) + sum(len(u.data) for u in [*kept, *posted.uploads])
    if total > spool.max_compose_bytes:
        raise compose.ComposeError("compose_too_large", limit_text(spool.max_compose_bytes), status=413)
    spooled = [compose.Upload(e.filename, e.content_type, await asyncio.to_thread(e.path.read_bytes))
               for e in entries]
    return [*kept, *posted.uploads, *spooled]


def forget_uploads(request: web.Request, account, posted: Posted) -> None:
    """The spooled files are in the sent message or the saved draft now: the spool lets them go."""
    for uid in posted.upload_ids:
        request.app[UPLOADS].remove(account.id, uid)


def refused_page(request: web.Request, account, posted: Posted, exc: compose.ComposeError, _):
    return _page(request, account, posted.draft, posted.mode, posted.source, status=exc.status,
                 draft_uid=posted.draft_uid, upload_ids=posted.upload_ids, error=_(exc.key, detail=exc.detail))


async def drafts_folder(store, account):
    """The account's Drafts (RFC 6154 \\Drafts), created when missing as the store provisions it."""
    found = next((f for f in await store.folders(account) if f.special_use == "\\Drafts"), None)
    if found is not None:
        return found
    try:
        return await store.create_folder(account, "Drafts", special_use="\\Drafts")
    except AlreadyExists:
        return await store.folder(account, "Drafts")


async def open_draft(request: web.Request, account, uid: str):
    """The stored draft `uid` of this account (404 when it is not one of its drafts) and its values."""
    folder = await drafts_folder(request.app[WEBMAIL].mailboxes.store, account)
    opened = await open_message(request, account, folder.name, uid)
    draft, kept, link = compose.continue_draft(opened.raw)
    return opened, draft, kept, link


async def send(request: web.Request) -> web.Response:
    account = require_account(request)
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    posted = await read_form(request)
    mode, draft, source = posted.mode, posted.draft, posted.source
    kept: list[compose.Upload] = []
    if posted.draft_uid:  # the draft's attachments (a forwarded original too) go along; the draft goes once sent
        stored, _values, kept, _link = await open_draft(request, account, posted.draft_uid)
    original = None
    if source:
        try:
            original = await open_message(request, account, *source, shared=True)
        except web.HTTPNotFound:
            if not (posted.draft_uid and mode in ("reply", "replyall")):
                raise
            # a reply continued from Drafts whose original has gone since: it is sent, nothing to flag
    if wm.submit is None:
        raise web.HTTPServiceUnavailable(text=_("error"))
    forwarded = original.raw if original is not None and mode == "forward" and not posted.draft_uid else None
    name = (original.parsed.envelope.subject_decoded.strip() or "message") + ".eml" if original else "message.eml"
    try:  # base64 of large uploads off the loop
        uploads = await attachments(request, account, posted, kept)
        size = sum(len(u.data) for u in uploads) + len(forwarded or b"") + len(draft.body) + len(draft.body_html)
        message, rcpts = await offload_if_large(size, functools.partial(
            compose.build, account, draft, hostname=wm.hostname, now=wm.clock(), uploads=uploads,
            forwarded=forwarded, forwarded_name=name))
    except compose.ComposeError as exc:
        return await refused_page(request, account, posted, exc, _)
    message = approval_views.with_label(request, (await request.post()).get("classification"), message)
    client = Client(request.remote or "-", "webmail", "HTTPS" if request.secure else "HTTP")
    outcome = await wm.submit(Submission(account.address, tuple(rcpts), message, account, client, origin="webmail"))
    if not outcome.accepted:
        return await _page(request, account, draft, mode, source, status=400, draft_uid=posted.draft_uid,
                           upload_ids=posted.upload_ids, error=_("send_refused", detail=outcome.reply.text))
    forget_uploads(request, account, posted)
    store = wm.mailboxes.store
    sent = next((f for f in await store.folders(account) if f.special_use == "\\Sent"), None)
    copy_failed = False
    if sent is not None:
        try:
            prepared = await offload_if_large(len(message), prepare, message)
            await store.append(account, sent.name, prepared, flags=int(Flag.SEEN))
        except StoreError:  # sent all the same: the user is told the copy is missing, the log says why
            log.exception("webmail: %s sent a message but its copy in %s could not be stored", account.address,
                          sent.name)
            copy_failed = True
    if posted.draft_uid:
        await store.expunge(stored.folder.ref, [stored.meta.uid], deleted_only=False)
    if original is not None and mode in ("reply", "replyall") and original.may("w"):  # RFC 4314: w sets \Answered
        await store.store_flags(original.folder.ref, [original.meta.uid], "add", int(Flag.ANSWERED))
    refused = ", ".join(r for r, _reply in outcome.refused)
    notes = {**({"refused": refused} if refused else {}), **({"copy_failed": "1"} if copy_failed else {})}
    target = folder_href(sent.name if sent is not None else "INBOX", **notes)
    raise web.HTTPSeeOther(target)
