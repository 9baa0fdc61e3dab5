"""What the webmail's official-documents pages call (webmail/views/documents.py): the documents API's rules and actions as Python calls.

The webmail does not import bridges (tests/unit/test_layout.py); the composition root hands it
one DocumentPages (bridges/docservice.py puts it in ctx.extras["documents"]). Who may see what
is decided by DocumentsApi, the same methods its JSON handlers use, so a page and the API never
disagree: registrars ([documents] registrars, on a site that receives documents) see incoming
documents and sign for them through the intake (the sign-for receipt goes back, the webhook
fires); administrators and [documents] dispatchers track what was dispatched (a dispatcher its
own documents only). Refusals come back as the store's errors, which the webmail maps in one
place: PermissionDenied (403) for someone who may not use the pages, NotFound (404) for an id
that is not there or not theirs.

Files of an incoming document are read from the copy the intake filed in the documents
account's 收文 folder (found by its Message-ID through the substring index) and checked
against the manifest's SHA-256 (docmail.manifest_part, file_part, file_data: only the manifest's
and that file's bytes are read from the store and decoded, not the whole message), so a registrar
downloads exactly what the issuing organisation signed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from mailboxes.charsets import decode_transfer
from mailboxes.documents import Registration, Tracking
from mailboxes.errors import InvalidInput, NotFound, PermissionDenied, StoreError
from mailboxes.mime import ParsedMessage
from mailboxes.model import Account
from mailboxes.offload import offload_if_large
from mailboxes.service import Mailboxes

from .api import Problem
from .docapi import DocumentsApi
from .docmail import file_data, file_part, manifest_part
from .intake import INCOMING
from .manifest import Document, ManifestError

MAX_CANDIDATES = 8  # messages of 收文 matching a Message-ID that are opened to find the document's copy


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@contextlib.contextmanager
def _as_store_errors() -> Iterator[None]:
    """The API's problem details as the store errors the webmail maps (403, 404, 400)."""
    try:
        yield
    except Problem as p:
        cls: type[StoreError] = {403: PermissionDenied, 404: NotFound}.get(p.status, InvalidInput)
        raise cls(p.detail or p.title) from None


@dataclass(frozen=True)
class Incoming:
    """A registered document as its reading page shows it: the registration and, when readable, its manifest."""

    registration: Registration
    document: Document | None


class DocumentPages:
    def __init__(self, api: DocumentsApi, mb: Mailboxes, *, overdue_after: dict[str, timedelta],
                 clock: Callable[[], datetime] = _utcnow) -> None:
        """`overdue_after`: per urgency, how long a recipient may take to sign for (the reminders' thresholds)."""
        self.api = api
        self.mb = mb
        self.overdue_after = {u: w for u, w in overdue_after.items() if w > timedelta(0)}
        self.clock = clock

    # --- who sees which pages (the navigation asks; every handler checks again) ------------
    def may_register(self, account: Account) -> bool:
        return self.api.may_register(account)

    def may_track(self, account: Account) -> bool:
        return self.api.may_dispatch(account)

    async def partner_names(self) -> dict[str, str]:
        """{organisation code: its name} of the partners (`postroom partner add ORG DOMAIN --name NAME`)."""
        return {p.org: p.name for p in await self.api.documents.partners() if p.name}

    # --- 收文: registrars ----------------------------------------------------------------
    async def incoming_page(self, account: Account, *, offset: int, limit: int
                            ) -> tuple[list[Registration], int, int]:
        """One page of registered documents (waiting 特急, 加急 first, then newest); (page, total, not signed for)."""
        with _as_store_errors():
            self.api.require_registrar(account)
        regs = await self.api.documents.registrations(offset=offset, limit=limit, urgent_first=True)
        total, waiting = await self.api.documents.count_registrations()
        return regs, total, waiting

    async def incoming(self, account: Account, reg_id: int) -> Incoming:
        with _as_store_errors():
            reg = await self.api.incoming(account, reg_id)
        try:
            doc = Document.from_json(reg.manifest)
        except ManifestError:  # registered before manifests were kept whole: the registration alone is shown
            doc = None
        return Incoming(reg, doc)

    async def incoming_file(self, account: Account, reg_id: int, index: int) -> tuple[str, str, bytes]:
        """(file name, media type, content) of the document's `index`-th file, as the manifest lists them.

        Read from the copy in 收文 through the stored part tree: only the manifest's and that file's
        bytes are read from the store (Store.raw_range) and decoded, not the message's other files,
        and the file is checked against the manifest's SHA-256.
        """
        reg = (await self.incoming(account, reg_id)).registration
        intake = self.api.intake
        if intake is None or not reg.message_id:
            raise NotFound("the document's message is not kept here")
        store = self.mb.store
        acct = await self.mb.directory.account(intake.cfg.address)
        folder = await store.folder(acct, INCOMING)
        uids = await store.search_substring(folder.ref, "text", reg.message_id.strip().strip("<>"))
        for uid in sorted(uids, reverse=True)[:MAX_CANDIDATES]:
            meta = await store.message(folder.ref, uid)
            if meta is None:
                continue
            parsed = ParsedMessage.from_json((await store.parsed(folder.ref.partition, [meta.blob_id]))[meta.blob_id])
            if (parsed.envelope.message_id or "").strip() != reg.message_id.strip():
                continue
            part, blob = folder.ref.partition, meta.blob_id
            try:
                m = manifest_part(parsed)
                doc = Document.from_json(decode_transfer(await store.raw_range(part, blob, m.body_start, m.body_end),
                                                         m.encoding))
                if str(doc.document_number) != reg.number:
                    continue
                a, f = file_part(parsed, doc, index)
                body = await store.raw_range(part, blob, f.body_start, f.body_end)
                return a.name, a.media_type, await offload_if_large(len(body), file_data, a, f, body)
            except IndexError:
                raise NotFound("no such file") from None
            except ManifestError:
                continue  # not the document's copy (or not intact): the next candidate
        raise NotFound("the document's message is not in 收文")

    async def sign(self, account: Account, reg_id: int) -> tuple[Registration, bool]:
        """签收, exactly as POST /api/v1/incoming/{id}/sign and `postroom dispatch sign` do (Intake.sign)."""
        with _as_store_errors():
            return await self.api.sign_for(account, reg_id)

    # --- 发文 tracking: dispatchers and administrators ------------------------------------
    async def sent_page(self, account: Account, *, offset: int, limit: int) -> tuple[list[list[Tracking]], int]:
        """One page of dispatched documents `account` may see, newest first, each as its recipient rows; and the total."""
        with _as_store_errors():
            self.api.require_dispatcher(account)
        ids, total = await self.api.documents.dispatched_page(sender=self.api.sender_filter(account), offset=offset,
                                                              limit=limit)
        by_doc: dict[int, list[Tracking]] = {i: [] for i in ids}
        for row in await self.api.documents.tracking(document_ids=ids, limit=max(len(ids), 1) * 1000):
            by_doc[row.document_id].append(row)
        return [rows for rows in by_doc.values() if rows], total

    async def sent(self, account: Account, doc_id: int) -> list[Tracking]:
        with _as_store_errors():
            return await self.api.tracked(account, doc_id)

    def overdue(self, row: Tracking) -> bool:
        """An urgent document this recipient has not signed for within the configured time."""
        wait = self.overdue_after.get(row.urgency)
        return wait is not None and row.signed_at is None and self.clock() - row.queued_at >= wait


__all__ = ["DocumentPages", "Incoming", "MAX_CANDIDATES"]
