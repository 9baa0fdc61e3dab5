"""Dispatching an official document (发文): the number claimed once, then one DKIM-signed message per recipient organisation through submit().

Implementation notes
- Order: check the files against the manifest and every recipient against the partner list,
  build the messages, claim the document number (documents_out's unique key), then submit.
  Claiming before submitting means a crash or a retry can never send a document twice under one
  number; the cost is that a crash between the claim and the submissions leaves recipients at
  "queued" with nothing sent, which `dispatch status` shows and an administrator can resend.
  When submit() refuses every message (a sender not allowed), the claim is released again.
- Each message goes through the one submit() (design.md): sender checks, DKIM signing of the
  copy that leaves (the manifest part is inside the signed body), the durable queue.
- Building a message with large files runs off the event loop (mailboxes.offload).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import make_msgid

from delivery.labels import HEADER as LABEL_HEADER
from delivery.queue import new_queue_id
from delivery.submit import Outcome, Submission
from mailboxes.documents import Documents
from mailboxes.errors import AlreadyExists, NotFound
from mailboxes.model import Account
from mailboxes.offload import offload_if_large

from .docmail import document_message
from .manifest import Document, ManifestError, check_files

log = logging.getLogger("postroom.dispatch")

Submit = Callable[[Submission], Awaitable[Outcome]]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Dispatched:
    """What happened to one dispatch: the document's id and, per organisation, the submit() reply."""

    document_id: int
    number: str
    replies: dict[str, str] = field(default_factory=dict)
    refused: tuple[str, ...] = ()  # organisations whose message submit() refused


class Dispatcher:
    def __init__(self, documents: Documents, submit: Submit, *, hostname: str,
                 clock: Callable[[], datetime] = _utcnow, classified_label: str = "") -> None:
        self.documents = documents
        self.classified_label = classified_label  # the label of a document with a 密级 (issue 13)
        self.submit = submit
        self.hostname = hostname
        self.clock = clock

    async def send(self, doc: Document, files: dict[str, bytes], *, sender: str,
                   account: Account | None = None) -> Dispatched:
        """Dispatch `doc`; ManifestError names what is wrong (files, an unknown organisation, a used number)."""
        check_files(doc, files)
        partners = {}
        for org in doc.recipients:
            try:
                partners[org] = await self.documents.partner(org)
            except NotFound:
                where = "main_recipients" if org in doc.main_recipients else "copy_recipients"
                raise ManifestError(where, f"{org} is not a partner organisation (postroom partner add)") from None
        names = {p.org: p.name for p in partners.values() if p.name}
        now = self.clock()
        size = sum(len(d) for d in files.values())
        messages: dict[str, tuple[str, str, bytes]] = {}
        for org, partner in partners.items():
            mid = make_msgid(domain=self.hostname)
            data = await offload_if_large(size, _build, doc, files, sender, partner.address, now, self.hostname,
                                          names, mid)
            if doc.classification and self.classified_label:  # submit() stamps it and holds what it must
                data = f"{LABEL_HEADER}: {self.classified_label}\r\n".encode("utf-8") + data
            messages[org] = (mid, new_queue_id(), data)
        number = str(doc.document_number)
        try:
            doc_id = await self.documents.record_dispatch(
                issuing_organ=doc.issuing_organ[0], year=doc.document_number.year, number=number, title=doc.title,
                urgency=doc.urgency, manifest=doc.to_json().decode(), sender=sender,
                recipients={org: (mid, qid) for org, (mid, qid, _) in messages.items()})
        except AlreadyExists:
            raise ManifestError("document_number", f"{doc.issuing_organ[0]} has already dispatched {number} "
                                                   f"(已发过此文号)") from None
        replies, refused = {}, []
        for org, (_, qid, data) in messages.items():
            out = await self.submit(Submission(mail_from=sender, recipients=(partners[org].address,), data=data,
                                               account=account, origin="bridge", queue_id=qid,
                                               priority=doc.priority))  # 特急/加急 overtake routine mail
            replies[org] = f"{out.reply.code} {out.reply.enhanced} {out.reply.text}"
            if not out.accepted:
                refused.append(org)
        if len(refused) == len(messages):  # nothing left: the number is free again (a refused sender, a bad header)
            await self.documents.release(doc_id)
        log.info("dispatch number=%s organ=%s doc_id=%d recipients=%s refused=%s urgency=%s", number,
                 doc.issuing_organ[0], doc_id, ",".join(messages), ",".join(refused) or "-", doc.urgency or "routine")
        return Dispatched(doc_id, number, replies, tuple(refused))


def _build(doc, files, sender, to, now, hostname, names, mid) -> bytes:
    return document_message(doc, files, sender=sender, to=to, now=now, hostname=hostname, names=names,
                            message_id=mid)
