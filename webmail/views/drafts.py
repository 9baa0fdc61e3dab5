"""Drafts: "save draft" keeps the compose form as a \\Draft message in the account's Drafts folder (RFC 6154)."""

from __future__ import annotations

import functools

from aiohttp import web

from mailboxes.errors import StoreError
from mailboxes.ingest import prepare
from mailboxes.model import Flag
from mailboxes.offload import offload_if_large

from .. import compose, i18n
from ..context import LOCALE, WEBMAIL
from ..sessions import require_account
from .compose import _page, attachments, drafts_folder, forget_uploads, open_draft, read_form, refused_page
from .message import open_message


async def save(request: web.Request) -> web.Response:
    """Store the form (and the attachments of the draft it continues) as a new draft; the old one goes."""
    account = require_account(request)
    wm = request.app[WEBMAIL]
    _ = i18n.translator(request[LOCALE])
    posted = await read_form(request)
    store = wm.mailboxes.store
    old, kept, forwarded, name = None, [], None, "message.eml"
    if posted.draft_uid:
        old, _values, kept, _link = await open_draft(request, account, posted.draft_uid)
    elif posted.mode == "forward" and posted.source:  # the original goes into the draft as it would be sent
        original = await open_message(request, account, *posted.source)
        forwarded = original.raw
        name = (original.parsed.envelope.subject_decoded.strip() or "message") + ".eml"
    try:
        uploads = await attachments(request, account, posted, kept)
        size = sum(len(u.data) for u in uploads) + len(forwarded or b"") + len(posted.draft.body) + len(posted.draft.body_html)
        message, _rcpts = await offload_if_large(size, functools.partial(
            compose.build, account, posted.draft, hostname=wm.hostname, now=wm.clock(), uploads=uploads,
            forwarded=forwarded, forwarded_name=name, unsent=True, link=posted.link))
        folder = await drafts_folder(store, account)
        prepared = await offload_if_large(len(message), prepare, message)
        # RFC 3501 §2.3.2: \Draft marks a message not yet complete; \Seen as the author has read it
        saved = await store.append(account, folder.name, prepared, flags=int(Flag.DRAFT | Flag.SEEN))
    except compose.ComposeError as exc:
        return await refused_page(request, account, posted, exc, _)
    except StoreError:
        return await _page(request, account, posted.draft, posted.mode, posted.source, status=507,
                           draft_uid=posted.draft_uid, upload_ids=posted.upload_ids, error=_("draft_not_saved"))
    forget_uploads(request, account, posted)
    if old is not None:
        await store.expunge(old.folder.ref, [old.meta.uid], deleted_only=False)
    raise web.HTTPSeeOther(f"/compose?draft={saved.uid}&saved=1")
